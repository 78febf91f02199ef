// The page's entry point: reads the address, shows the landing page, the
// pre-join form or the meeting, and keeps the meeting going across reconnects.
//
// The meeting secret comes from the address fragment and stays in memory
// (here, in the Call and in the worker). It is never logged, stored or sent.

import { Call } from './call.js';
import { ConnectionPanel } from './connection-info.js';
import { E2ee } from './e2ee.js';
import { MeetingView } from './meeting-view.js';
import { Prejoin } from './prejoin.js';
import { meetingLink, meetingPath, newMeetingSecret, newRoomId, encodeBase64Url, parseMeetingLocation } from './secret.js';
import { missingFeatures, unsupportedMessage } from './support.js';

const $ = (id) => document.getElementById(id);
const SECTIONS = ['landing', 'notice', 'prejoin', 'meeting'];
/** Delays between reconnect attempts; the last one repeats. */
const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
/** Server error codes worth retrying (anything else is shown and stops us). */
const TRANSIENT_CODES = new Set(['unreachable', 'closed', 'internal', 'rate_limited', 'media_failed']);
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

/** A meeting the person is in: one Call at a time, replaced on reconnect. */
class Meeting {
  constructor({ room, secret, name, stream, e2ee, view }) {
    this.room = room;
    this.secret = secret;
    this.name = name;
    this.stream = stream;
    this.e2ee = e2ee;
    this.view = view;
    this.call = null;
    this.state = 'idle';
    this.attempt = 0;
    this.retryTimer = null;
    this.lastStatus = null;
    this.timings = { joinClickedAt: null, firstRemoteFrameAt: null, joinToFirstFrameMs: null };
    this.token = new URLSearchParams(location.search).get('token');
    e2ee.onStatus = (status) => {
      this.lastStatus = status;
      view.showE2eeStatus(status);
    };
    e2ee.onEvents = (events) => {
      if (events.some((e) => e.type === 'roster_mismatch')) {
        view.showE2eeStatus({ ...(this.lastStatus ?? {}), rosterMismatch: true });
      }
    };
    view.onFirstRemoteFrame = (_id, time) => {
      if (this.timings.firstRemoteFrameAt !== null) return;
      this.timings.firstRemoteFrameAt = time;
      if (this.timings.joinClickedAt !== null) {
        this.timings.joinToFirstFrameMs = Math.round(time - this.timings.joinClickedAt);
      }
    };
  }

  /** Joins (retrying while the server is unreachable). */
  async connect() {
    clearTimeout(this.retryTimer);
    if (this.state === 'left') return;
    this.state = this.attempt === 0 ? 'joining' : 'reconnecting';
    const call = new Call({
      room: this.room,
      name: this.name,
      secret: this.secret,
      token: this.token,
      localStream: this.stream,
      e2ee: this.e2ee,
      handlers: this.#handlers(),
    });
    this.call = call;
    try {
      await call.join();
    } catch (error) {
      if (this.call !== call || this.state === 'left') return;
      call.dispose();
      if (TRANSIENT_CODES.has(error.code)) {
        this.#scheduleRetry(
          error.code === 'unreachable'
            ? 'Cannot reach the Sealed server. Check your network connection.'
            : 'The server closed the connection.',
        );
      } else {
        this.state = 'failed';
        showNotice({
          title: 'Could not join the meeting',
          text: JOIN_REFUSALS[error.code] ?? `The server refused to let this browser join: ${error.message} (${error.code}).`,
          retryLabel: 'Try again',
          onRetry: () => location.reload(),
          offerNewMeeting: true,
        });
      }
      return;
    }
    this.state = 'joined';
    this.attempt = 0;
    this.view.setBanner(null);
  }

  /** Leaves for good. */
  leave() {
    this.state = 'left';
    clearTimeout(this.retryTimer);
    this.call?.leave();
    this.call = null;
    for (const track of this.stream.getTracks()) track.stop();
  }

  setTrackEnabled(kind, enabled) {
    if (this.call) this.call.setTrackEnabled(kind, enabled);
    else for (const track of this.stream.getTracks()) if (track.kind === kind) track.enabled = enabled;
    this.view.setSelfMuted(kind, !enabled);
  }

  #scheduleRetry(reason) {
    const delay = RECONNECT_DELAYS_MS[Math.min(this.attempt, RECONNECT_DELAYS_MS.length - 1)];
    this.attempt += 1;
    this.state = 'reconnecting';
    this.view.clearRemote();
    this.view.setBanner(`${reason} Reconnecting in ${Math.round(delay / 1000) || 1} s…`, 'bad');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  #handlers() {
    const view = this.view;
    return {
      onWelcome: ({ ownId, participants }) => {
        view.clearRemote();
        view.setSelfId(ownId);
        for (const p of participants) view.addParticipant(p);
      },
      onParticipantJoined: (p) => view.addParticipant(p),
      onParticipantLeft: (id) => view.removeParticipant(id),
      onRemoteTrack: (id, _track, stream) => view.showRemoteTrack(id, stream),
      onTrackMuted: (id, kind, muted) => view.setTrackMuted(id, kind, muted),
      onActiveSpeakers: (ids) => view.setActiveSpeakers(ids),
      onServerError: (code, message) => {
        // A key message for someone who just left: harmless, the engine moves on.
        if (code === 'unknown_recipient') return;
        if (code === 'media_failed') {
          this.call?.dispose();
          this.call = null;
          this.#scheduleRetry('The media connection failed.');
          return;
        }
        view.setBanner(`The server reported a problem: ${message} (${code})`, 'bad');
      },
      onDisconnected: (reason, { noPath } = {}) => {
        // Rejoin as a new participant with a fresh identity; the others rotate keys.
        this.call = null;
        this.#scheduleRetry(noPath ? reason : `Connection lost: ${reason}.`);
      },
    };
  }
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
    meeting = new Meeting({ room, secret, name, stream: prejoin.stream, e2ee, view });
    watchConnectionPath(meeting, new ConnectionPanel(document.querySelector('#meeting .sidebar')));
    meeting.timings.joinClickedAt = clickedAt;
    wireControls(meeting, room, secret);
    view.showSelf(name, prejoin.stream);
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

function wireControls(current, room, secret) {
  const mic = $('toggle-mic');
  const camera = $('toggle-camera');
  const render = () => {
    const micOn = current.stream.getAudioTracks().some((t) => t.enabled);
    const cameraOn = current.stream.getVideoTracks().some((t) => t.enabled);
    mic.setAttribute('aria-pressed', String(micOn));
    mic.textContent = micOn ? 'Mute' : 'Unmute';
    mic.disabled = current.stream.getAudioTracks().length === 0;
    camera.setAttribute('aria-pressed', String(cameraOn));
    camera.textContent = cameraOn ? 'Stop camera' : 'Start camera';
    camera.disabled = current.stream.getVideoTracks().length === 0;
  };
  mic.onclick = () => {
    current.setTrackEnabled('audio', mic.getAttribute('aria-pressed') !== 'true');
    render();
  };
  camera.onclick = () => {
    current.setTrackEnabled('video', camera.getAttribute('aria-pressed') !== 'true');
    render();
  };
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
    showNotice({
      title: 'You left the meeting',
      text: 'Your camera and microphone are off. The others’ keys change now, so nothing sent from here on can be decrypted with the keys you had.',
      retryLabel: 'Rejoin',
      onRetry: () => location.reload(),
      offerNewMeeting: true,
    });
  };
  render();
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
    ...(status ?? {}),
  };
};

/** Test and diagnostics hook: WebRTC statistics of the current call. */
window.sealedRtcStats = async () => (meeting?.call ? meeting.call.rtcStats() : null);

function route() {
  const where = parseMeetingLocation(location.pathname, location.hash);
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
