// Pre-join: camera and microphone preview, device pickers, display name.

import { deviceConstraints, fillDeviceSelect, trackDeviceId } from './devices.js';

/** A sentence a person understands for a getUserMedia failure. */
export function mediaErrorMessage(error) {
  switch (error?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return (
        'Sealed may not use your camera and microphone. Allow access for this site ' +
        '(the camera icon in the address bar), then press "Join meeting" again. You can also join without them.'
      );
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No camera or microphone was found. Connect one and press "Join meeting" again, or join without them.';
    case 'NotReadableError':
    case 'AbortError':
      return 'Your camera or microphone is busy (another application may be using it). Close it and try again.';
    default:
      return `Your camera and microphone could not be opened (${error?.message ?? error}).`;
  }
}

/** The pre-join form and its preview stream. */
export class Prejoin {
  /** The stream being previewed (may have 0, 1 or 2 tracks). */
  stream = new MediaStream();

  constructor(root) {
    const $ = (id) => root.querySelector(`#${id}`);
    this.video = $('preview-video');
    this.previewOff = $('preview-off');
    this.cameraSelect = $('camera-select');
    this.micSelect = $('mic-select');
    this.micToggle = $('prejoin-mic');
    this.cameraToggle = $('prejoin-camera');
    this.error = $('prejoin-error');
    this.nameInput = $('display-name');
    this.joinWithout = $('join-without-devices');
    this.cameraSelect.onchange = () => this.open();
    this.micSelect.onchange = () => this.open();
    this.micToggle.onchange = () => this.#applyToggles();
    this.cameraToggle.onchange = () => this.#applyToggles();
  }

  /** Opens (or reopens) the selected devices. Resolves to true on success. */
  async open() {
    this.#stopTracks();
    const constraints = {
      audio: deviceConstraints('audio', this.micSelect.value),
      video: deviceConstraints('video', this.cameraSelect.value),
    };
    try {
      this.stream = await this.#getUserMedia(constraints);
    } catch (error) {
      this.stream = new MediaStream();
      this.#showError(mediaErrorMessage(error));
      this.#render();
      return false;
    }
    this.#showError(null);
    await this.#listDevices();
    this.#applyToggles();
    this.#render();
    return true;
  }

  /** Stops the preview's tracks (on leaving the page). */
  stop() {
    this.#stopTracks();
  }

  /** The display name typed, trimmed; null when empty. */
  name() {
    const name = this.nameInput.value.trim();
    return name.length > 0 ? name.slice(0, 64) : null;
  }

  async #getUserMedia(constraints) {
    try {
      return await navigator.mediaDevices.getUserMedia(constraints);
    } catch (error) {
      // With one of the two devices missing, still offer the other.
      if (error?.name !== 'NotFoundError' && error?.name !== 'OverconstrainedError') throw error;
      for (const only of [{ audio: constraints.audio }, { video: constraints.video }]) {
        try {
          return await navigator.mediaDevices.getUserMedia(only);
        } catch {
          // try the next one
        }
      }
      throw error;
    }
  }

  async #listDevices() {
    const devices = await navigator.mediaDevices.enumerateDevices().catch(() => []);
    fillDeviceSelect(this.cameraSelect, devices, 'video', trackDeviceId(this.stream.getVideoTracks()[0]));
    fillDeviceSelect(this.micSelect, devices, 'audio', trackDeviceId(this.stream.getAudioTracks()[0]));
  }

  #applyToggles() {
    for (const track of this.stream.getAudioTracks()) track.enabled = this.micToggle.checked;
    for (const track of this.stream.getVideoTracks()) track.enabled = this.cameraToggle.checked;
    this.#render();
  }

  #render() {
    // An element playing a stream without tracks never gets data and would
    // hold up the page's load event: show nothing instead.
    this.video.srcObject = this.stream.getTracks().length > 0 ? this.stream : null;
    const showsVideo = this.stream.getVideoTracks().some((t) => t.enabled);
    this.previewOff.hidden = showsVideo;
    this.previewOff.textContent = this.stream.getVideoTracks().length ? 'Camera off' : 'No camera';
    this.joinWithout.hidden = this.stream.getTracks().length > 0;
  }

  #showError(text) {
    this.error.hidden = text === null;
    this.error.textContent = text ?? '';
  }

  #stopTracks() {
    for (const track of this.stream.getTracks()) track.stop();
  }
}
