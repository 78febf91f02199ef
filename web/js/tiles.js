// The DOM of one person in the meeting (a tile and a row in the list) and of
// one shared screen. Names come from other participants: untrusted text,
// always set with textContent.

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

export function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function initials(name) {
  // The first letter of the first two words that have one ("Ivy (Firefox)" → "IF").
  const letters = name.match(/(?<![\p{L}\p{N}])[\p{L}\p{N}]/gu) ?? [];
  return letters.slice(0, 2).join('').toUpperCase() || '?';
}

/** A pin button for a tile; `onToggle()` runs on click. */
function pinButton(label, onToggle) {
  const button = element('button', 'pin', 'Pin');
  button.type = 'button';
  button.setAttribute('aria-pressed', 'false');
  button.setAttribute('aria-label', `Pin ${label}`);
  button.onclick = onToggle;
  return button;
}

/** Plays `track` in `video` (or nothing for null); keeps the element's stream when unchanged. */
function playTrack(video, track) {
  const current = video.srcObject?.getTracks?.()[0] ?? null;
  if (current === track) return;
  video.srcObject = track ? new MediaStream([track]) : null;
  if (track) video.play().catch(() => {});
}

/** One person in the meeting: a tile and a row in the participant list. */
export class Person {
  /** `onPin()` runs when the person's pin button is clicked. */
  constructor({ id, name, self, onPin }) {
    this.id = id;
    this.name = name;
    this.self = self;
    this.micMuted = false;
    this.cameraOff = false;
    this.handUp = false;
    this.firstFrameAt = null;
    this.waitingForFrame = false;
    this.addedAt = performance.now();

    this.tile = element('div', self ? 'tile self' : 'tile');
    this.video = element('video');
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.video.muted = true; // sound plays from this.audio, wherever the tile goes
    this.avatar = element('div', 'avatar', initials(name));
    const footer = element('div', 'tile-footer');
    this.nameEl = element('span', 'name', self ? `${name} (you)` : name);
    this.handIcon = element('span', 'hand-icon', '✋ hand raised');
    this.micIcon = element('span', 'state-icon', 'mic off');
    this.cameraIcon = element('span', 'state-icon', 'camera off');
    this.badge = element('span', 'badge');
    footer.append(this.nameEl, element('span', 'spacer'), this.handIcon, this.micIcon, this.cameraIcon, this.badge);
    this.pin = pinButton(self ? 'yourself' : name, () => onPin?.());
    this.tile.append(this.video, this.avatar, this.pin, footer);

    this.audio = self ? null : element('audio');
    if (this.audio) this.audio.autoplay = true;

    this.row = element('li');
    this.rowName = element('span', 'name', self ? `${name} (you)` : name);
    this.rowHand = element('span', 'hand-icon', '✋');
    this.rowHand.title = 'hand raised';
    this.rowMic = element('span', 'state-icon', 'mic off');
    this.rowCamera = element('span', 'state-icon', 'camera off');
    this.rowBadge = element('span', 'badge');
    this.row.append(this.rowHand, this.rowName, this.rowMic, this.rowCamera, this.rowBadge);

    this.setId(id);
    this.setBadge(self ? 'self_no_key' : 'no_media');
    this.#render();
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
    this.#render();
  }

  setHand(up) {
    this.handUp = up;
    this.#render();
  }

  setPinned(pinned) {
    this.pin.setAttribute('aria-pressed', String(pinned));
    this.pin.textContent = pinned ? 'Unpin' : 'Pin';
  }

  setSpeaking(speaking) {
    this.tile.classList.toggle('speaking', speaking);
    this.row.classList.toggle('speaking', speaking);
  }

  /**
   * Shows the camera `video` track (or none) and plays the `audio` track;
   * `onFirstFrame(time)` runs once the first video frame shows.
   */
  showMedia({ video = null, audio = null }, onFirstFrame) {
    playTrack(this.video, video);
    if (this.audio) playTrack(this.audio, audio);
    this.tile.classList.toggle('has-video', video !== null);
    if (!video || this.firstFrameAt !== null || this.waitingForFrame) return;
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
    if (this.audio) {
      this.audio.srcObject = null;
      this.audio.remove();
    }
    this.tile.remove();
    this.row.remove();
  }

  #render() {
    this.handIcon.hidden = !this.handUp;
    this.rowHand.hidden = !this.handUp;
    this.micIcon.hidden = !this.micMuted;
    this.rowMic.hidden = !this.micMuted;
    this.cameraIcon.hidden = !this.cameraOff;
    this.rowCamera.hidden = !this.cameraOff;
    this.tile.classList.toggle('camera-off', this.cameraOff);
    this.tile.classList.toggle('hand-up', this.handUp);
  }
}

/** A shared screen: its own tile, shown on the stage while it is presented. */
export class ScreenTile {
  constructor({ id, name, self, onPin }) {
    this.id = id;
    this.tile = element('div', 'tile screen');
    this.tile.dataset.screen = id === null ? 'self' : String(id);
    this.video = element('video');
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.video.muted = true;
    this.video.dataset.screen = this.tile.dataset.screen;
    const footer = element('div', 'tile-footer');
    footer.append(element('span', 'name', self ? 'You are presenting' : `${name} is presenting`));
    this.pin = pinButton(self ? 'your screen' : `${name}'s screen`, () => onPin?.());
    this.tile.append(this.video, this.pin, footer);
  }

  setId(id) {
    this.id = id;
    this.tile.dataset.screen = id === null ? 'self' : String(id);
    this.video.dataset.screen = this.tile.dataset.screen;
  }

  setPinned(pinned) {
    this.pin.setAttribute('aria-pressed', String(pinned));
    this.pin.textContent = pinned ? 'Unpin' : 'Pin';
  }

  show(track) {
    playTrack(this.video, track);
  }

  remove() {
    this.video.srcObject = null;
    this.tile.remove();
  }
}
