// When to give up on a Call and join again.
//
// A Call is never repaired: when its signaling socket closes, or its media
// connections fail or stay lost while the socket is fine (a network change, a
// NAT rebinding, a server that lost our media state), the page disposes of it
// and joins again as a new participant with a fresh identity. The others see a
// leave and a join, so the group keys rotate exactly as for any leave/join, and
// nothing of the old connection's state can leak into the new one. The SFU does
// not support ICE restarts (and cannot offer one on the subscribe connection,
// where it is the offerer), so a rejoin is also the only repair it understands.

/** First reconnect delay; each attempt doubles it up to `RECONNECT_MAX_DELAY_MS`. */
export const RECONNECT_FIRST_DELAY_MS = 250;

/** Longest wait between two reconnect attempts. */
export const RECONNECT_MAX_DELAY_MS = 4000;

/**
 * How long a media connection may stay `disconnected` before we rejoin. Browsers
 * report `disconnected` a few seconds after consent checks stop being answered
 * and recover by themselves from short outages (a busy server answers late);
 * `failed` comes only after ~30 s. A connection that never connects is the
 * server's to give up on (`media_failed` after its connect timeout): the
 * subscribe connection waits for the server's first offer, which may be long.
 */
export const MEDIA_LOST_GRACE_MS = 4000;

/**
 * The delay before reconnect attempt `attempt` (0-based): exponential, capped,
 * and spread over its upper half so that a whole meeting whose server restarted
 * does not come back in one burst.
 */
export function reconnectDelay(attempt, random = Math.random) {
  const ceiling = Math.min(RECONNECT_FIRST_DELAY_MS * 2 ** Math.max(0, attempt), RECONNECT_MAX_DELAY_MS);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * Watches a Call's PeerConnections and calls `onLost(reason, {neverConnected})`
 * once when one of them failed, or stayed disconnected for `MEDIA_LOST_GRACE_MS`.
 * `neverConnected`: the one that failed never reached "connected" (no path works).
 */
export class MediaWatchdog {
  #timers = new Set();
  #fired = false;

  constructor(onLost, { graceMs = MEDIA_LOST_GRACE_MS } = {}) {
    this.onLost = onLost;
    this.graceMs = graceMs;
  }

  /** Starts watching `peer` (a Peer of call.js: `{kind, pc}`). */
  watch(peer) {
    let lostTimer = null;
    let everConnected = false;
    const arm = (ms, reason) => {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        this.#fire(reason);
      }, ms);
      this.#timers.add(timer);
      return timer;
    };
    const disarm = (timer) => {
      clearTimeout(timer);
      this.#timers.delete(timer);
    };
    peer.pc.addEventListener('connectionstatechange', () => {
      const state = peer.pc.connectionState;
      if (state === 'connected') {
        everConnected = true;
        disarm(lostTimer);
        lostTimer = null;
      } else if (state === 'failed') {
        this.#fire(`the ${peer.kind} media connection failed`, !everConnected);
      } else if (state === 'disconnected' && lostTimer === null) {
        lostTimer = arm(this.graceMs, `the ${peer.kind} media connection was lost`);
      }
    });
  }

  /** Stops every timer; nothing fires after this. */
  stop() {
    this.#fired = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  #fire(reason, neverConnected = false) {
    if (this.#fired) return;
    console.warn(`media: ${reason}; joining again`);
    this.stop();
    this.onLost(reason, { neverConnected });
  }
}
