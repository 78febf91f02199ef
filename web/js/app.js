// The page's entry point: reads the address, shows the landing page, the
// pre-join form or the meeting, and wires the meeting's controls.
//
// The meeting secret comes from the address fragment, which is then taken out
// of the address bar and this history entry; it stays in memory (here, in the
// Meeting and Call, and in the worker) and, so that a reload rejoins, in this
// tab's sessionStorage until the person leaves. It is never logged or sent.

import { ChatPanel } from './chat.js';
import { ConnectionPanel } from './connection-info.js';
import { DevicePanel } from './devices.js';
import { E2ee } from './e2ee.js';
import { Meeting } from './meeting.js';
import { MeetingView } from './meeting-view.js';
import { Prejoin } from './prejoin.js';
import { canShareScreen } from './screen-share.js';
import {
  encodeBase64Url,
  forgetSecret,
  meetingLink,
  meetingPath,
  newMeetingSecret,
  newRoomId,
  rememberSecret,
  takeMeetingSecret,
} from './secret.js';
import { missingFeatures, unsupportedMessage } from './support.js';

const $ = (id) => document.getElementById(id);
const SECTIONS = ['landing', 'notice', 'prejoin', 'meeting'];
/** What a refused join means, for the server's stable error codes. */
const JOIN_REFUSALS = {
  room_full: 'This meeting is full.',
  too_many_rooms: 'The server hosts as many meetings as it can right now. Try again later.',
  unauthorized: 'This server only admits invited participants, and your link carries no valid invitation token.',
  unsupported_protocol: 'This page is older than the server. Reload it.',
};

function showSection(name) {
  for (const section of SECTIONS) $(section).hidden = section !== name;
}

/** Shows a full-page explanation with optional actions. */
function showNotice({ title, text, retryLabel = null, onRetry = null, offerNewMeeting = false }) {
  $('notice-title').textContent = title;
  $('notice-text').textContent = text;
  const retry = $('notice-retry');
  retry.hidden = !onRetry;
  retry.textContent = retryLabel ?? 'Try again';
  retry.onclick = onRetry;
  $('notice-new').hidden = !offerNewMeeting;
  showSection('notice');
}

function showLanding() {
  $('room-label').textContent = '';
  $('new-meeting').onclick = () => {
    const room = newRoomId();
    const secret = newMeetingSecret();
    // A navigation to another path: the fragment is never part of the request.
    location.assign(`${meetingPath(room)}#${encodeBase64Url(secret)}`);
  };
  showSection('landing');
}

function showLinkProblem(problem) {
  const title = problem === 'missing_secret' ? 'This link has no key' : 'This link’s key is damaged';
  showNotice({
    title,
    text:
      'A Sealed meeting link ends with a secret key after the “#”. Your browser needs it to encrypt and ' +
      'decrypt the meeting; the server never sees it.\n\n' +
      (problem === 'missing_secret'
        ? 'The link you opened stops before that part. Ask the person who invited you to send the whole link again.'
        : 'The part after the “#” is not a valid key (it may have been cut or changed while copying). ' +
          'Ask for the whole link again.'),
    offerNewMeeting: true,
  });
}

let meeting = null;

async function startPrejoin(room, secret) {
  $('room-label').textContent = room;
  const e2ee = new E2ee({
    onFatal: (message) => {
      meeting?.leave();
      showNotice({
        title: 'Encryption could not start',
        text: `The encryption engine of this page failed to load, so the meeting cannot be joined safely.\n\n${message}`,
        onRetry: () => location.reload(),
      });
    },
  });
  const prejoin = new Prejoin($('prejoin'));
  showSection('prejoin');
  await prejoin.open();

  let withoutDevices = false;
  $('join-without-devices').onclick = () => {
    withoutDevices = true;
    $('join-form').requestSubmit();
  };
  $('join-form').onsubmit = async (event) => {
    event.preventDefault();
    const name = prejoin.name();
    if (!name) return;
    if (prejoin.stream.getTracks().length === 0 && !withoutDevices && !(await prejoin.open())) return;
    const clickedAt = performance.now();
    const button = $('join-button');
    button.disabled = true;
    try {
      await e2ee.ready();
    } catch {
      button.disabled = false;
      return; // onFatal explains
    }
    const view = new MeetingView($('meeting'));
    let controls = null;
    const chat = new ChatPanel($('meeting'), { onSend: (text) => meeting.sendChat(text) });
    meeting = new Meeting({
      room,
      secret,
      name,
      token: new URLSearchParams(location.search).get('token'),
      stream: prejoin.stream,
      e2ee,
      view,
      chat,
      onRefused: (error) =>
        showNotice({
          title: 'Could not join the meeting',
          text: JOIN_REFUSALS[error.code] ?? `The server refused to let this browser join: ${error.message} (${error.code}).`,
          retryLabel: 'Try again',
          onRetry: () => location.reload(),
          offerNewMeeting: true,
        }),
      onChange: () => controls?.render(),
    });
    watchConnectionPath(meeting, new ConnectionPanel(document.querySelector('#meeting .sidebar')));
    meeting.timings.joinClickedAt = clickedAt;
    controls = wireControls(meeting, room, secret);
    view.showSelf(name, meeting.cameraTrack);
    view.setBanner('Joining…');
    showSection('meeting');
    await meeting.connect();
  };
}

/** Keeps the connection details up to date while the meeting lasts. */
function watchConnectionPath(current, panel) {
  const refresh = async () => {
    if (current.state === 'left') return;
    const call = current.call;
    panel.show(call ? await call.mediaPaths() : { publish: null, subscribe: null });
    setTimeout(refresh, 2000);
  };
  refresh();
}

/** Connects the meeting's buttons and pickers; returns `{render}` to refresh them. */
function wireControls(current, room, secret) {
  const mic = $('toggle-mic');
  const camera = $('toggle-camera');
  const present = $('present');
  const hand = $('raise-hand');
  const layout = $('toggle-layout');
  const devices = new DevicePanel($('meeting'), {
    onSwitch: async (kind, deviceId) => {
      devices.showError(null);
      try {
        await current.switchDevice(kind, deviceId);
      } catch (error) {
        devices.showError(`That device could not be opened (${error?.message ?? error}).`);
      }
    },
    onSpeaker: (deviceId) =>
      current.view.setSinkId(deviceId).catch((error) => {
        devices.showError(`Sound cannot play there (${error?.message ?? error}).`);
      }),
  });
  const render = () => {
    const micOn = current.stream.getAudioTracks().some((t) => t.enabled);
    const cameraOn = current.stream.getVideoTracks().some((t) => t.enabled);
    mic.setAttribute('aria-pressed', String(micOn));
    mic.textContent = micOn ? 'Mute' : 'Unmute';
    mic.disabled = current.stream.getAudioTracks().length === 0;
    camera.setAttribute('aria-pressed', String(cameraOn));
    camera.textContent = cameraOn ? 'Stop camera' : 'Start camera';
    camera.disabled = current.stream.getVideoTracks().length === 0;
    const presenting = current.screen.track !== null;
    present.textContent = presenting ? 'Stop presenting' : 'Present';
    present.setAttribute('aria-pressed', String(presenting));
    hand.textContent = current.hand ? 'Lower hand' : 'Raise hand';
    hand.setAttribute('aria-pressed', String(current.hand));
    devices.refresh({ audio: current.micTrack, video: current.cameraTrack });
  };
  mic.onclick = () => {
    current.setTrackEnabled('audio', mic.getAttribute('aria-pressed') !== 'true');
    render();
  };
  camera.onclick = () => {
    current.setTrackEnabled('video', camera.getAttribute('aria-pressed') !== 'true');
    render();
  };
  present.hidden = !canShareScreen();
  present.onclick = async () => {
    if (current.screen.track) {
      current.stopPresenting();
      return;
    }
    const problem = await current.startPresenting();
    if (problem) current.view.setBanner(problem, 'bad');
  };
  hand.onclick = () => current.setHand(!current.hand);
  layout.onclick = () => {
    const speaker = layout.getAttribute('aria-pressed') !== 'true';
    layout.setAttribute('aria-pressed', String(speaker));
    layout.textContent = speaker ? 'Grid view' : 'Speaker view';
    current.view.setSpeakerView(speaker);
  };
  navigator.mediaDevices.addEventListener?.('devicechange', render);
  $('copy-link').onclick = async () => {
    const link = meetingLink(location.origin, room, secret);
    const button = $('copy-link');
    try {
      await navigator.clipboard.writeText(link);
      button.textContent = 'Link copied';
    } catch {
      window.prompt('Copy this invite link (it contains the meeting key):', link);
    }
    setTimeout(() => {
      button.textContent = 'Copy invite link';
    }, 2000);
  };
  $('leave').onclick = () => {
    current.leave();
    // The tab forgets the secret: a reload no longer rejoins by itself.
    forgetSecret(sessionStorage, room);
    showNotice({
      title: 'You left the meeting',
      text: 'Your camera and microphone are off. The others’ keys change now, so nothing sent from here on can be decrypted with the keys you had.',
      retryLabel: 'Rejoin',
      onRetry: () => {
        rememberSecret(sessionStorage, room, secret);
        location.reload();
      },
      offerNewMeeting: true,
    });
  };
  render();
  return { render };
}

/** Test and diagnostics hook: E2EE counters, epoch, safety number, per-participant state. */
window.sealedStats = async () => {
  if (!meeting) return null;
  const status = await Promise.race([
    meeting.e2ee.status(),
    new Promise((resolve) => setTimeout(() => resolve(meeting.lastStatus), 2000)),
  ]);
  return {
    room: meeting.room,
    ownId: meeting.call?.ownId ?? null,
    connection: meeting.state,
    participantIds: meeting.view.participantIds(),
    shownSafetyNumber: $('safety-number').textContent,
    timings: { ...meeting.timings },
    ...meeting.snapshot(),
    ...(status ?? {}),
  };
};

/** Test and diagnostics hook: WebRTC statistics of the current call. */
window.sealedRtcStats = async () => (meeting?.call ? meeting.call.rtcStats() : null);

function route() {
  const where = takeMeetingSecret({ location, history, storage: sessionStorage });
  if (where.view === 'landing') {
    showLanding();
    return;
  }
  if (where.view === 'bad_room') {
    showNotice({
      title: 'This is not a meeting link',
      text: 'Meeting names use only letters, digits, “-” and “_”, up to 64 characters.',
      offerNewMeeting: true,
    });
    return;
  }
  const missing = missingFeatures(globalThis);
  if (missing.length > 0) {
    showNotice({ title: 'This browser cannot join', text: unsupportedMessage(missing) });
    return;
  }
  if (where.problem) {
    showLinkProblem(where.problem);
    return;
  }
  startPrejoin(where.room, where.secret);
}

window.addEventListener('hashchange', () => {
  if (!meeting) location.reload();
});

route();
