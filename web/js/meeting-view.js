// The meeting view: tiles in a grid or around a stage, the participant list,
// the E2EE panel. It only renders; meeting.js decides what to show. What goes
// where is decided by the pure functions of layout.js.

import { chooseStage, gridShape, pageCount, pageItems, PAGE_SIZE, SpeakerTracker } from './layout.js';
import { Person, ScreenTile } from './tiles.js';

export { BADGE_TEXT } from './tiles.js';

/** The E2EE panel's title while the engine refuses to send, by its pause reason. */
export const PAUSED_TITLE = Object.freeze({
  rekey_overdue: 'Waiting for new key — not sending',
  roster_mismatch: 'Participant lists differ — not sending',
  epochs_exhausted: 'Keys cannot rotate any more — not sending; start a new meeting',
});

/** How long a participant may send nothing before we stop saying "connecting". */
const SILENT_AFTER_MS = 8000;

/** The key of a person or a screen on the stage (`id` null is us before we have an id). */
const personKey = (id) => `person:${id ?? 'self'}`;
const screenKey = (id) => `screen:${id ?? 'self'}`;

/** The meeting screen. */
export class MeetingView {
  #people = new Map();
  #self = null;
  /** participant id (or null for us) → ScreenTile, for everyone presenting. */
  #screens = new Map();
  /** Presenters in the order they started: [{id, since}]. */
  #presenters = [];
  #pinned = null;
  #speakerView = false;
  #speakers = new SpeakerTracker();
  #page = 0;
  #sinkId = '';

  constructor(root) {
    const $ = (id) => root.querySelector(`#${id}`);
    this.main = $('meeting-main');
    this.stage = $('stage');
    this.grid = $('grid');
    this.pager = $('pager');
    this.pageLabel = $('page-label');
    this.audioSinks = $('audio-sinks');
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
    $('page-prev').onclick = () => this.#turnPage(-1);
    $('page-next').onclick = () => this.#turnPage(1);
    new ResizeObserver(() => this.#sizeGrid()).observe(this.grid);
  }

  /** Shows our own tile with the local camera track (or none). */
  showSelf(name, cameraTrack) {
    this.#self?.remove();
    this.#self = new Person({ id: null, name, self: true, onPin: () => this.togglePin(personKey(this.#self.id)) });
    this.list.prepend(this.#self.row);
    this.#self.showMedia({ video: cameraTrack });
    this.#updateCount();
    this.#layout();
  }

  /** Our participant id, once the server assigned it. */
  setSelfId(id) {
    if (this.#pinned === personKey(this.#self?.id)) this.#pinned = personKey(id);
    this.#self?.setId(id);
    this.#layout();
  }

  /** Our camera track changed (device switch, camera started or stopped). */
  setSelfCamera(track) {
    this.#self?.showMedia({ video: track });
  }

  /** Our own mute state, as shown on our tile. */
  setSelfMuted(kind, muted) {
    this.#self?.setMuted(kind, muted);
  }

  /** Our own hand, as shown on our tile and in the list. */
  setSelfHand(up) {
    this.#self?.setHand(up);
    this.#sortList();
  }

  addParticipant({ id, name }) {
    if (this.#people.has(id)) return;
    const person = new Person({ id, name, self: false, onPin: () => this.togglePin(personKey(id)) });
    person.audio.setSinkId?.(this.#sinkId).catch(() => {});
    this.#people.set(id, person);
    this.list.append(person.row);
    this.audioSinks.append(person.audio);
    this.#updateCount();
    this.#layout();
  }

  removeParticipant(id) {
    this.#people.get(id)?.remove();
    this.#people.delete(id);
    this.setScreen(id, null);
    this.#speakers.forget(id);
    if (this.#pinned === personKey(id)) this.#pinned = null;
    this.#updateCount();
    this.#layout();
  }

  /** Removes every remote participant (before a reconnect). */
  clearRemote() {
    for (const id of [...this.#people.keys()]) this.removeParticipant(id);
  }

  /** Participant `id`'s camera and microphone tracks (either may be null). */
  showParticipantMedia(id, media) {
    const person = this.#people.get(id);
    person?.showMedia(media, (time) => this.onFirstRemoteFrame?.(id, time));
  }

  /**
   * Shows `track` as the screen participant `id` presents (null: we do), or
   * ends it with null; `since` (performance.now() time) orders several presenters.
   */
  setScreen(id, track, name = '', since = performance.now()) {
    let screen = this.#screens.get(id);
    if (track === null) {
      if (!screen) return;
      screen.remove();
      this.#screens.delete(id);
      this.#presenters = this.#presenters.filter((p) => p.id !== id);
      if (this.#pinned === screenKey(id)) this.#pinned = null;
      this.#layout();
      return;
    }
    if (!screen) {
      screen = new ScreenTile({ id, name, self: id === null, onPin: () => this.togglePin(screenKey(id)) });
      this.#screens.set(id, screen);
      this.#presenters.push({ id, since });
      this.#presenters.sort((a, b) => a.since - b.since);
    }
    screen.show(track);
    this.#layout();
  }

  setTrackMuted(id, kind, muted) {
    this.#people.get(id)?.setMuted(kind, muted);
  }

  /** Participant `id`'s hand. */
  setHand(id, up) {
    this.#people.get(id)?.setHand(up);
    this.#sortList();
  }

  setActiveSpeakers(ids) {
    const speaking = new Set(ids);
    for (const [id, person] of this.#people) person.setSpeaking(speaking.has(id));
    this.#self?.setSpeaking(this.#self.id !== null && speaking.has(this.#self.id));
    const loudest = ids.find((id) => this.#people.has(id)) ?? null;
    const before = this.#speakers.current;
    this.#speakers.update(loudest, performance.now());
    if (this.#speakerView && this.#speakers.current !== before) this.#layout();
  }

  /** Grid (false) or speaker view (true). */
  setSpeakerView(on) {
    this.#speakerView = on;
    this.#layout();
  }

  /** Pins `key` to the stage, or unpins it if it is pinned. */
  togglePin(key) {
    this.#pinned = this.#pinned === key ? null : key;
    this.#layout();
  }

  /** Plays every participant's sound on the output device `sinkId` ('' = default). */
  async setSinkId(sinkId) {
    this.#sinkId = sinkId;
    await Promise.all([...this.#people.values()].map((p) => p.audio.setSinkId?.(sinkId)));
  }

  /** What the layout shows right now (for tests and diagnostics). */
  layoutState() {
    return {
      stage: this.#stageKey(),
      pinned: this.#pinned,
      speakerView: this.#speakerView,
      presenters: this.#presenters.map((p) => p.id),
      page: this.#page,
      pages: this.#speakerView || this.#stageKey() ? 1 : pageCount(this.#tiles().length),
      visibleTiles: [...this.grid.querySelectorAll('.tile:not([hidden])')].map(
        (t) => t.dataset.participant ?? `screen:${t.dataset.screen}`,
      ),
    };
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

  /** Names by participant id (for the chat). */
  nameOf(id) {
    if (this.#self && this.#self.id === id) return `${this.#self.name} (you)`;
    return this.#people.get(id)?.name ?? `participant ${id}`;
  }

  /** Every person's tile in grid order: us first, then the others in join order. */
  #tiles() {
    const people = [...(this.#self ? [this.#self] : []), ...this.#people.values()];
    return people.map((p) => ({ key: personKey(p.id), tile: p.tile, item: p }));
  }

  #stageKey() {
    const key = chooseStage({
      pinned: this.#pinned,
      presenters: this.#presenters.map((p) => p.id ?? 'self'),
      speakerView: this.#speakerView,
      speaker: this.#speakers.current,
    });
    return key;
  }

  /** Puts every tile where the layout wants it. */
  #layout() {
    const stageKey = this.#stageKey();
    const screens = [...this.#screens.entries()].map(([id, s]) => ({ key: screenKey(id), tile: s.tile, item: s }));
    const all = [...screens, ...this.#tiles()];
    for (const { key, item } of all) item.setPinned(key === this.#pinned);
    const onStage = all.find((t) => t.key === stageKey) ?? null;
    this.main.classList.toggle('has-stage', onStage !== null);
    this.stage.hidden = onStage === null;
    if (onStage) {
      if (onStage.tile.parentElement !== this.stage) this.stage.replaceChildren(onStage.tile);
    } else {
      this.stage.replaceChildren();
    }
    // Beside a stage, the others form a strip (screens first); without one, a paged grid.
    const rest = all.filter((t) => t !== onStage && (onStage !== null || !t.key.startsWith('screen:')));
    const shown = onStage ? rest : pageItems(rest, this.#page);
    const visible = new Set(shown.map((t) => t.tile));
    const order = onStage ? rest : [...shown, ...rest.filter((t) => !visible.has(t.tile))];
    for (const { tile } of order) tile.hidden = !visible.has(tile);
    // Move tiles only when the order changed: a moved <video> may skip frames.
    const current = [...this.grid.children];
    if (order.length !== current.length || order.some((t, i) => t.tile !== current[i])) {
      order.forEach(({ tile }, i) => {
        if (this.grid.children[i] !== tile) this.grid.insertBefore(tile, this.grid.children[i] ?? null);
      });
    }
    const pages = onStage ? 1 : pageCount(rest.length);
    this.#page = Math.min(this.#page, pages - 1);
    this.pager.hidden = pages <= 1;
    this.pageLabel.textContent = `${this.#page + 1} / ${pages}`;
    this.#sizeGrid();
  }

  #turnPage(step) {
    this.#page = Math.max(0, this.#page + step);
    this.#layout();
  }

  /** Sizes grid tiles so that a page of them fits without scrolling. */
  #sizeGrid() {
    if (this.main.classList.contains('has-stage')) {
      this.grid.style.removeProperty('--cols');
      this.grid.style.removeProperty('--tile-width');
      return;
    }
    const count = [...this.grid.children].filter((t) => !t.hidden).length;
    const style = getComputedStyle(this.grid);
    const width = this.grid.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const height = this.grid.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
    if (width <= 0 || height <= 0) return;
    const gap = parseFloat(style.columnGap) || 8;
    const shape = gridShape(Math.min(count, PAGE_SIZE), width, height, { gap });
    this.grid.style.setProperty('--cols', String(shape.cols));
    this.grid.style.setProperty('--tile-width', `${shape.tileWidth}px`);
  }

  #sortList() {
    // Raised hands first (in the order the list had them), then everyone else.
    const rows = [...this.list.children];
    const up = rows.filter((r) => r.querySelector('.hand-icon:not([hidden])'));
    const down = rows.filter((r) => !up.includes(r));
    this.list.replaceChildren(...up, ...down);
  }

  #updateCount() {
    this.count.textContent = String(this.#people.size + (this.#self ? 1 : 0));
  }
}
