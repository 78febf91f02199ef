// Layout decisions of the meeting screen, as pure functions: how many columns a
// grid of tiles needs, which tiles a page shows, and what takes the stage.
// meeting-view.js applies them to the DOM.

/** Most tiles one grid page shows (5 × 5 fits a laptop screen). */
export const PAGE_SIZE = 25;

/** Width / height of a tile. */
export const TILE_ASPECT = 16 / 9;

/**
 * The grid shape that makes `count` tiles of `aspect` as large as possible in a
 * `width` × `height` area with `gap` pixels between tiles:
 * `{ cols, rows, tileWidth, tileHeight }` (sizes in whole pixels, at least 1).
 */
export function gridShape(count, width, height, { aspect = TILE_ASPECT, gap = 8 } = {}) {
  const n = Math.max(1, count);
  let best = null;
  for (let cols = 1; cols <= n; cols += 1) {
    const rows = Math.ceil(n / cols);
    const byWidth = (width - gap * (cols - 1)) / cols;
    const byHeight = ((height - gap * (rows - 1)) / rows) * aspect;
    const tileWidth = Math.floor(Math.min(byWidth, byHeight));
    if (best === null || tileWidth > best.tileWidth) best = { cols, rows, tileWidth };
  }
  const tileWidth = Math.max(1, best.tileWidth);
  return { cols: best.cols, rows: best.rows, tileWidth, tileHeight: Math.max(1, Math.floor(tileWidth / aspect)) };
}

/** Number of grid pages for `count` tiles (at least 1). */
export function pageCount(count, pageSize = PAGE_SIZE) {
  return Math.max(1, Math.ceil(count / pageSize));
}

/** The items of page `page` (0-based, clamped to the pages there are). */
export function pageItems(items, page, pageSize = PAGE_SIZE) {
  const last = pageCount(items.length, pageSize) - 1;
  const p = Math.min(Math.max(0, page), last);
  return items.slice(p * pageSize, (p + 1) * pageSize);
}

/**
 * What the stage (the large view) shows, as a key — `'screen:<id>'` or
 * `'person:<id>'` — or null for the plain grid. In order of precedence:
 * what the person pinned; the shared screen of the most recent presenter
 * (several may present: the last one to start wins the stage, the others stay
 * a click away); in speaker view, the active speaker.
 *
 * `pinned`: a key or null; `presenters`: participant ids in the order they
 * started presenting; `speakerView`: boolean; `speaker`: an id or null.
 */
export function chooseStage({ pinned = null, presenters = [], speakerView = false, speaker = null }) {
  if (pinned) return pinned;
  if (presenters.length > 0) return `screen:${presenters[presenters.length - 1]}`;
  if (speakerView && speaker !== null && speaker !== undefined) return `person:${speaker}`;
  return null;
}

/**
 * Keeps the active speaker from flapping: a new speaker takes over only after
 * `holdMs` without a change, and stays until someone else does.
 */
export class SpeakerTracker {
  constructor(holdMs = 1500) {
    this.holdMs = holdMs;
    this.current = null;
    this.candidate = null;
    this.candidateSince = 0;
  }

  /**
   * Feeds the loudest participant (`id`, or null for silence) at time `now`;
   * returns the speaker to show.
   */
  update(id, now) {
    if (id === null || id === undefined || id === this.current) {
      this.candidate = null;
      return this.current;
    }
    if (this.current === null) {
      this.current = id;
      return id;
    }
    if (this.candidate !== id) {
      this.candidate = id;
      this.candidateSince = now;
    } else if (now - this.candidateSince >= this.holdMs) {
      this.current = id;
      this.candidate = null;
    }
    return this.current;
  }

  /** Forgets `id` (it left). */
  forget(id) {
    if (this.current === id) this.current = null;
    if (this.candidate === id) this.candidate = null;
  }
}
