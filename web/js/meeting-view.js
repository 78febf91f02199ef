// The meeting view: participant tiles, the participant list, the E2EE panel.
// It only renders; app.js decides what to show. Names from other participants
// are untrusted text: always set with textContent.

/** What each decrypt state is called on a participant's badge. */
export const BADGE_TEXT = Object.freeze({
  decrypting: '✓ decrypting',
  waiting_for_key: 'waiting for key',
  failing: 'cannot decrypt',
  no_media: 'connecting',
  silent: 'no media received',
  self: 'you encrypt',
  self_no_key: 'no key yet: not sending',
  self_paused: 'waiting for new key: not sending',
  self_blocked: 'participant lists differ: not sending',
});

/** The E2EE panel's title while the engine refuses to send, by its pause reason. */
export const PAUSED_TITLE = Object.freeze({
  rekey_overdue: 'Waiting for new key — not sending',
  roster_mismatch: 'Participant lists differ — not sending',
  epochs_exhausted: 'Keys cannot rotate any more — not sending; start a new meeting',
});

/** How long a participant may send nothing before we stop saying "connecting". */
const SILENT_AFTER_MS = 8000;

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const letters = parts.slice(0, 2).map((p) => [...p][0] ?? '');
  return letters.join('').toUpperCase() || '?';
}

/** One person in the meeting: a tile in the grid and a row in the list. */
class Person {
  constructor({ id, name, self }) {
    this.id = id;
    this.name = name;
    this.self = self;
    this.micMuted = false;
    this.cameraOff = false;
    this.firstFrameAt = null;
    this.waitingForFrame = false;
    this.addedAt = performance.now();

    this.tile = element('div', self ? 'tile self' : 'tile');
    this.video = element('video');
    this.video.autoplay = true;
    this.video.playsInline = true;
    if (self) this.video.muted = true;
    this.avatar = element('div', 'avatar', initials(name));
    const footer = element('div', 'tile-footer');
    this.nameEl = element('span', 'name', self ? `${name} (you)` : name);
    this.micIcon = element('span', 'state-icon', 'mic off');
    this.cameraIcon = element('span', 'state-icon', 'camera off');
    this.badge = element('span', 'badge');
    footer.append(this.nameEl, element('span', 'spacer'), this.micIcon, this.cameraIcon, this.badge);
    this.tile.append(this.video, this.avatar, footer);

    this.row = element('li');
    this.rowName = element('span', 'name', self ? `${name} (you)` : name);
    this.rowMic = element('span', 'state-icon', 'mic off');
    this.rowCamera = element('span', 'state-icon', 'camera off');
    this.rowBadge = element('span', 'badge');
    this.row.append(this.rowName, this.rowMic, this.rowCamera, this.rowBadge);

    this.setId(id);
    this.setBadge(self ? 'self_no_key' : 'no_media');
    this.#renderMute();
  }

  setId(id) {
    this.id = id;
    const value = id === null ? 'self' : String(id);
    this.tile.dataset.participant = value;
    this.video.dataset.participant = value;
    this.row.dataset.participant = value;
  }

  setBadge(state) {
    const text = BADGE_TEXT[state] ?? state;
    for (const badge of [this.badge, this.rowBadge]) {
      badge.dataset.state = state;
      badge.textContent = text;
    }
  }

  setMuted(kind, muted) {
    if (kind === 'audio') this.micMuted = muted;
    else this.cameraOff = muted;
    this.#renderMute();
  }

  setSpeaking(speaking) {
    this.tile.classList.toggle('speaking', speaking);
    this.row.classList.toggle('speaking', speaking);
  }

  /** Shows `stream` in the tile; `onFirstFrame(time)` runs once a frame is shown. */
  showStream(stream, onFirstFrame) {
    if (stream.getTracks().length === 0) return;
    if (this.video.srcObject !== stream) {
      this.video.srcObject = stream;
      this.video.play().catch(() => {});
    }
    const hasVideo = stream.getVideoTracks().length > 0;
    this.tile.classList.toggle('has-video', hasVideo);
    if (!hasVideo || this.firstFrameAt !== null || this.waitingForFrame) return;
    this.waitingForFrame = true;
    const done = () => {
      if (this.firstFrameAt !== null) return;
      this.firstFrameAt = performance.now();
      onFirstFrame?.(this.firstFrameAt);
    };
    if (typeof this.video.requestVideoFrameCallback === 'function') {
      this.video.requestVideoFrameCallback(done);
    } else {
      this.video.addEventListener('loadeddata', done, { once: true });
    }
  }

  remove() {
    this.video.srcObject = null;
    this.tile.remove();
    this.row.remove();
  }

  #renderMute() {
    this.micIcon.hidden = !this.micMuted;
    this.rowMic.hidden = !this.micMuted;
    this.cameraIcon.hidden = !this.cameraOff;
    this.rowCamera.hidden = !this.cameraOff;
    this.tile.classList.toggle('camera-off', this.cameraOff);
  }
}

/** The meeting screen. */
export class MeetingView {
  #people = new Map();
  #self = null;

  constructor(root) {
    const $ = (id) => root.querySelector(`#${id}`);
    this.grid = $('grid');
    this.list = $('participant-list');
    this.count = $('people-count');
    this.banner = $('banner');
    this.safetyNumber = $('safety-number');
    this.epoch = $('epoch');
    this.securityTitle = $('security-title');
    this.rosterWarning = $('roster-warning');
    this.noKeyWarning = $('no-key-warning');
    /** Called with (participantId, time) when a remote participant's first frame shows. */
    this.onFirstRemoteFrame = null;
  }

  /** Shows our own tile with the local preview stream. */
  showSelf(name, stream) {
    this.#self?.remove();
    this.#self = new Person({ id: null, name, self: true });
    this.#self.setMuted('audio', !stream.getAudioTracks().some((t) => t.enabled));
    this.#self.setMuted('video', !stream.getVideoTracks().some((t) => t.enabled));
    this.grid.prepend(this.#self.tile);
    this.list.prepend(this.#self.row);
    this.#self.showStream(stream);
    this.#updateCount();
  }

  /** Our participant id, once the server assigned it. */
  setSelfId(id) {
    this.#self?.setId(id);
  }

  /** Our own mute state, as shown on our tile. */
  setSelfMuted(kind, muted) {
    this.#self?.setMuted(kind, muted);
  }

  addParticipant({ id, name }) {
    if (this.#people.has(id)) return;
    const person = new Person({ id, name, self: false });
    this.#people.set(id, person);
    this.grid.append(person.tile);
    this.list.append(person.row);
    this.#updateCount();
  }

  removeParticipant(id) {
    this.#people.get(id)?.remove();
    this.#people.delete(id);
    this.#updateCount();
  }

  /** Removes every remote participant (before a reconnect). */
  clearRemote() {
    for (const person of this.#people.values()) person.remove();
    this.#people.clear();
    this.#updateCount();
  }

  /** A remote track arrived for participant `id` (as part of `stream`). */
  showRemoteTrack(id, stream) {
    const person = this.#people.get(id);
    if (!person) return;
    person.showStream(stream, (time) => this.onFirstRemoteFrame?.(id, time));
  }

  setTrackMuted(id, kind, muted) {
    this.#people.get(id)?.setMuted(kind, muted);
  }

  setActiveSpeakers(ids) {
    const speaking = new Set(ids);
    for (const [id, person] of this.#people) person.setSpeaking(speaking.has(id));
    this.#self?.setSpeaking(this.#self.id !== null && speaking.has(this.#self.id));
  }

  /** Renders the worker's E2EE status. */
  showE2eeStatus(status) {
    const haveKey = status.epoch !== null && status.epoch !== undefined;
    // The engine stopped sending (fail closed): say so rather than "encrypted".
    const paused = status.paused ?? null;
    this.securityTitle.textContent = paused
      ? (PAUSED_TITLE[paused] ?? 'Not sending')
      : haveKey
        ? 'End-to-end encrypted'
        : 'Waiting for the meeting key…';
    this.securityTitle.classList.toggle('no-key', !haveKey || paused !== null);
    this.securityTitle.dataset.paused = paused ?? '';
    const selfBadge = paused === 'roster_mismatch' ? 'self_blocked' : paused ? 'self_paused' : 'self';
    this.#self?.setBadge(haveKey ? selfBadge : 'self_no_key');
    this.safetyNumber.textContent = status.safetyNumber ?? '…';
    this.epoch.textContent = status.epoch ?? 'none yet';
    this.rosterWarning.hidden = !status.rosterMismatch && paused !== 'roster_mismatch';
    const now = performance.now();
    for (const [id, person] of this.#people) {
      let state = status.participants?.[String(id)]?.state ?? 'no_media';
      // Still nothing after a while: they send nothing we receive (no camera, or no key).
      if (state === 'no_media' && now - person.addedAt > SILENT_AFTER_MS) state = 'silent';
      person.setBadge(state);
    }
    const failing = [...this.#people.keys()].filter(
      (id) => status.participants?.[String(id)]?.state === 'failing',
    );
    this.noKeyWarning.hidden = failing.length === 0;
    this.noKeyWarning.textContent = failing.length
      ? 'This browser cannot decrypt what some participants send. If it stays that way, your meeting link ' +
        'may differ from theirs: ask for the link again.'
      : '';
  }

  /** Shows a status line above the grid (`tone`: 'info' or 'bad'); null hides it. */
  setBanner(text, tone = 'info') {
    this.banner.hidden = text === null;
    this.banner.textContent = text ?? '';
    this.banner.classList.toggle('bad', tone === 'bad');
  }

  /** Participant ids shown, in join order. */
  participantIds() {
    return [...this.#people.keys()];
  }

  #updateCount() {
    this.count.textContent = String(this.#people.size + (this.#self ? 1 : 0));
  }
}
