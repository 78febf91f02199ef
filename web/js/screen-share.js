// Sharing a screen, window or tab: capture, and noticing when it ends.
//
// The captured track goes out as our 'screen' source (call.js): a third
// sendonly transceiver that exists from the start, with the same encrypting
// worker transform as the camera, so presenting is a `replaceTrack`, never a
// renegotiation. Who presents which track travels in the encrypted chat
// channel (`{"t":"screen","track":…}`, docs/PROTOCOL.md): the server only sees
// one more encrypted video stream.

/** What we ask the browser to capture. */
export const DISPLAY_CONSTRAINTS = Object.freeze({
  video: { frameRate: { ideal: 15, max: 30 } },
  audio: false,
});

/** A sentence for a person when presenting could not start, or null when they cancelled. */
export function shareErrorMessage(error) {
  switch (error?.name) {
    case 'NotAllowedError':
    case 'AbortError':
      return null; // the person closed the picker
    case 'NotFoundError':
    case 'NotSupportedError':
    case 'TypeError':
      return 'This browser cannot share a screen here.';
    case 'NotReadableError':
      return 'The screen could not be captured (another application may be using it).';
    default:
      return `Presenting failed (${error?.message ?? error}).`;
  }
}

/** Whether this browser offers screen capture at all. */
export function canShareScreen() {
  return typeof globalThis.navigator?.mediaDevices?.getDisplayMedia === 'function';
}

/** Our own screen share: at most one at a time. */
export class ScreenShare {
  /** The captured track while presenting, else null. */
  track = null;

  /** `onEnded()` runs when the capture ends by itself (the browser's "Stop sharing"). */
  constructor({ onEnded }) {
    this.onEnded = onEnded;
  }

  /** Asks the person what to share; resolves to the track (rejects like getDisplayMedia). */
  async start() {
    this.stop();
    const stream = await navigator.mediaDevices.getDisplayMedia(DISPLAY_CONSTRAINTS);
    const track = stream.getVideoTracks()[0];
    for (const other of stream.getTracks()) if (other !== track) other.stop();
    // Text and lines stay sharp: encoders keep resolution and drop frame rate.
    track.contentHint = 'detail';
    track.addEventListener('ended', () => {
      if (this.track !== track) return;
      this.track = null;
      this.onEnded?.();
    });
    this.track = track;
    return track;
  }

  /** Stops capturing (a no-op when not presenting). */
  stop() {
    const track = this.track;
    this.track = null;
    track?.stop();
  }
}
