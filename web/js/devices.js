// Cameras, microphones and speakers: the pickers (before and during a
// meeting), opening one device, and noticing when the one in use goes away.
//
// Switching a device during a meeting opens the new device and hands its track
// to the call (`replaceTrack` on the same sender, same encrypting transform, no
// renegotiation); meeting.js does that part.

/** Constraints we ask every camera for. */
export const CAMERA_CONSTRAINTS = Object.freeze({ width: { ideal: 640 }, height: { ideal: 360 } });

/** The `MediaDeviceInfo.kind` of each picker. */
const DEVICE_KIND = { audio: 'audioinput', video: 'videoinput', speaker: 'audiooutput' };
const DEVICE_NOUN = { audio: 'Microphone', video: 'Camera', speaker: 'Speaker' };

/** getUserMedia constraints for one `kind` ('audio' or 'video') of device (`deviceId` '' = default). */
export function deviceConstraints(kind, deviceId) {
  if (kind === 'audio') return deviceId ? { deviceId: { exact: deviceId } } : true;
  return deviceId ? { deviceId: { exact: deviceId }, ...CAMERA_CONSTRAINTS } : { ...CAMERA_CONSTRAINTS };
}

/** Opens one device of `kind`; resolves to its track (rejects like getUserMedia). */
export async function openDevice(kind, deviceId = '') {
  const stream = await navigator.mediaDevices.getUserMedia({ [kind]: deviceConstraints(kind, deviceId) });
  return stream.getTracks()[0];
}

/** Whether this browser can choose where sound plays. */
export function canChooseSpeaker() {
  return typeof globalThis.HTMLMediaElement?.prototype?.setSinkId === 'function';
}

/**
 * Fills `select` with the devices of picker `kind` ('audio', 'video' or
 * 'speaker') and selects `currentId` when given (else keeps the selection).
 */
export function fillDeviceSelect(select, devices, kind, currentId) {
  const current = currentId || select.value;
  select.replaceChildren();
  devices
    .filter((d) => d.kind === DEVICE_KIND[kind] && d.deviceId !== '')
    .forEach((d, i) => {
      const option = document.createElement('option');
      option.value = d.deviceId;
      option.textContent = d.label || `${DEVICE_NOUN[kind]} ${i + 1}`;
      select.append(option);
    });
  if (current && [...select.options].some((o) => o.value === current)) select.value = current;
  select.disabled = select.options.length === 0;
}

/** The device id a track was opened on ('' if the browser does not say). */
export function trackDeviceId(track) {
  return track?.getSettings?.().deviceId ?? '';
}

/** The in-meeting device pickers. */
export class DevicePanel {
  /**
   * `onSwitch(kind, deviceId)` switches the camera ('video') or microphone
   * ('audio'); `onSpeaker(deviceId)` chooses the speaker.
   */
  constructor(root, { onSwitch, onSpeaker }) {
    const $ = (id) => root.querySelector(`#${id}`);
    this.panel = $('devices');
    this.toggle = $('toggle-devices');
    this.selects = { video: $('meeting-camera'), audio: $('meeting-mic'), speaker: $('meeting-speaker') };
    this.speakerRow = $('meeting-speaker-row');
    this.error = $('devices-error');
    this.toggle.onclick = () => this.setOpen(this.panel.hidden);
    this.selects.video.onchange = () => onSwitch('video', this.selects.video.value);
    this.selects.audio.onchange = () => onSwitch('audio', this.selects.audio.value);
    this.selects.speaker.onchange = () => onSpeaker(this.selects.speaker.value);
    this.speakerRow.hidden = !canChooseSpeaker();
  }

  setOpen(open) {
    this.panel.hidden = !open;
    this.toggle.setAttribute('aria-pressed', String(open));
  }

  /** Lists the devices again, selecting the ones `tracks` ({audio, video}) use. */
  async refresh(tracks) {
    const devices = await navigator.mediaDevices.enumerateDevices().catch(() => []);
    fillDeviceSelect(this.selects.video, devices, 'video', trackDeviceId(tracks.video));
    fillDeviceSelect(this.selects.audio, devices, 'audio', trackDeviceId(tracks.audio));
    fillDeviceSelect(this.selects.speaker, devices, 'speaker', null);
    if (this.selects.speaker.options.length === 0) this.speakerRow.hidden = true;
  }

  /** Shows a problem with a device (null clears it). */
  showError(text) {
    this.error.hidden = text === null;
    this.error.textContent = text ?? '';
  }
}
