// Per-participant decryption bookkeeping, kept by the worker.
//
// Each remote participant's frames either decrypt or are dropped; from the
// recent history we derive the state shown on their tile:
// - 'no_media': nothing received yet,
// - 'decrypting': a frame decrypted recently,
// - 'waiting_for_key': frames arrive but we hold no key for them (yet),
// - 'failing': frames keep failing (bad tag, or no key for too long).

/** How recent a good frame must be for the participant to count as decrypting. */
export const DECRYPTING_WINDOW_MS = 2000;

/** How long we wait for a key before calling the participant 'failing'. */
export const KEY_WAIT_LIMIT_MS = 4000;

/** The reasons a received frame is dropped, as the worker records them. */
export const DropReason = Object.freeze({
  NO_KEY: 'no_key',
  AUTH: 'auth',
  /** A copy of a frame already decrypted (browsers occasionally hand one over twice). */
  REPLAY: 'replay',
  /** The frame is keyed by someone else than the track's participant (a relabelled track). */
  WRONG_SENDER: 'wrong_sender',
  OTHER: 'other',
});

function emptyKindCounters() {
  return { decrypted: 0, dropped: 0 };
}

/** How many unparsable frames a participant's state describes (the latest ones). */
export const UNPARSED_KEPT = 4;

/** Decryption counters and state of one remote participant. */
export class ParticipantDecryptState {
  constructor() {
    this.audio = emptyKindCounters();
    this.video = emptyKindCounters();
    this.droppedByReason = { no_key: 0, auth: 0, replay: 0, wrong_sender: 0, other: 0 };
    this.lastOkAt = null;
    this.lastDropAt = null;
    /** Start of the current run of drops with no good frame in between. */
    this.dropStreakSince = null;
    this.dropStreakAuthFailures = 0;
    /** The latest frames dropped as unparsable, described by what is in the clear. */
    this.unparsed = [];
  }

  /**
   * Records a frame dropped as unparsable ({@link DropReason.OTHER}) with what the
   * browser said about it — `{kind, bytes, codec, mime, payloadType, firstByte, result}`: sizes
   * and clear header bytes only, never the payload. Counts it like any other drop.
   */
  recordUnparsed(kind, frame, now) {
    this.unparsed.push({ kind, ...frame, at: now });
    if (this.unparsed.length > UNPARSED_KEPT) this.unparsed.shift();
    this.recordDrop(kind, DropReason.OTHER, now);
  }

  /** Records a frame that decrypted. */
  recordOk(kind, now) {
    this.#kind(kind).decrypted += 1;
    this.lastOkAt = now;
    this.dropStreakSince = null;
    this.dropStreakAuthFailures = 0;
  }

  /**
   * Records a dropped frame and why. A replay is counted apart: its original
   * was decrypted, so nothing was lost and the state does not change.
   */
  recordDrop(kind, reason, now) {
    this.droppedByReason[reason] = (this.droppedByReason[reason] ?? 0) + 1;
    if (reason === DropReason.REPLAY) return;
    this.#kind(kind).dropped += 1;
    this.lastDropAt = now;
    this.dropStreakSince ??= now;
    // A frame under someone else's key is as bad as a failed tag: nothing will fix it by waiting.
    if (reason === DropReason.AUTH || reason === DropReason.WRONG_SENDER) this.dropStreakAuthFailures += 1;
  }

  /** The state shown to the person at time `now`. */
  state(now) {
    if (this.lastOkAt === null && this.lastDropAt === null) return 'no_media';
    const okRecently = this.lastOkAt !== null && now - this.lastOkAt <= DECRYPTING_WINDOW_MS;
    if (this.dropStreakSince === null || okRecently) return 'decrypting';
    if (this.dropStreakAuthFailures > 0) return 'failing';
    if (now - this.dropStreakSince > KEY_WAIT_LIMIT_MS) return 'failing';
    return 'waiting_for_key';
  }

  /** A plain snapshot for the page. */
  snapshot(now) {
    return {
      state: this.state(now),
      audio: { ...this.audio },
      video: { ...this.video },
      droppedByReason: { ...this.droppedByReason },
      unparsed: this.unparsed.map((u) => ({ ...u })),
    };
  }

  #kind(kind) {
    return kind === 'audio' ? this.audio : this.video;
  }
}

/** The engine's drop reason codes (`Session.decrypt`'s string result) → {@link DropReason}. */
const ENGINE_DROP_REASONS = Object.freeze({
  unknown_kid: DropReason.NO_KEY,
  auth: DropReason.AUTH,
  replay: DropReason.REPLAY,
  wrong_sender: DropReason.WRONG_SENDER,
  malformed: DropReason.OTHER,
});

/** The {@link DropReason} of a drop reason code the engine returned from `decrypt`. */
export function dropReasonOf(code) {
  return ENGINE_DROP_REASONS[code] ?? DropReason.OTHER;
}
