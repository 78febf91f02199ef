// A meeting the person is in: one Call at a time (replaced on reconnect), our
// camera, microphone and screen, the encrypted chat channel (messages, hand
// raises, screen-share announcements) and what we know of everyone else.
//
// The meeting secret stays in memory here, in the Call and in the worker.

import { Call } from './call.js';
import { decodeChatMessage, encodeChatMessage } from './chat.js';
import { openDevice } from './devices.js';
import { reconnectDelay } from './reconnect.js';
import { ScreenShare, shareErrorMessage } from './screen-share.js';

/** Server error codes worth retrying (anything else is shown and stops us). */
const TRANSIENT_CODES = new Set([
  'unreachable',
  'closed',
  'internal',
  'rate_limited',
  'media_failed',
  'cluster_unavailable',
]);

/**
 * How long a chat message sent under a key we do not hold yet is kept for
 * another try: a member switches to a new epoch up to 1 s after installing it,
 * so a joiner can receive a message a moment before its key.
 */
const CHAT_KEY_WAIT_MS = 5000;

/** What the engine's chat encryption errors mean, for people. */
const CHAT_SEND_ERRORS = {
  not_sending: 'this browser has no meeting key it may send with yet',
  too_large: 'the message is too long',
  unsupported: 'this page’s encryption engine has no chat',
};

/** A remote participant's media as far as we know it. */
class Remote {
  /** trackId → {kind, track} */
  tracks = new Map();
  /** The msid track id they announced as their shared screen, or null. */
  screenTrack = null;
  /** When (our clock) they started presenting. */
  screenSince = 0;
  hand = false;
}

export class Meeting {
  /**
   * `stream`: our microphone and camera (either may be missing); `view`: the
   * MeetingView; `chat`: the ChatPanel; `onRefused(error)`: the server refused
   * to let us join for a reason retrying does not fix (error.code).
   */
  constructor({ room, secret, name, token, stream, e2ee, view, chat, onRefused, onChange }) {
    this.room = room;
    this.secret = secret;
    this.name = name;
    this.token = token;
    this.stream = stream;
    this.e2ee = e2ee;
    this.view = view;
    this.chat = chat;
    this.onRefused = onRefused;
    /** Runs when something the controls show changed (presenting, hand, devices). */
    this.onChange = onChange ?? (() => {});
    this.call = null;
    this.state = 'idle';
    this.attempt = 0;
    this.rejoins = 0;
    this.retryTimer = null;
    this.lastStatus = null;
    this.hand = false;
    this.screen = new ScreenShare({ onEnded: () => this.stopPresenting() });
    this.timings = { joinClickedAt: null, firstRemoteFrameAt: null, joinToFirstFrameMs: null };
    this.counters = { chatSent: 0, chatReceived: 0, chatUndecryptable: 0, deviceSwitches: 0 };
    /** participant id → Remote */
    this.remotes = new Map();
    /** Chat payloads waiting for their key: {from, payload, until}. */
    this.pendingChat = [];
    for (const track of stream.getTracks()) this.#watchLocalTrack(track);
    e2ee.onStatus = (status) => {
      this.lastStatus = status;
      view.showE2eeStatus(status);
    };
    e2ee.onEvents = (events) => this.#onE2eeEvents(events);
    view.onFirstRemoteFrame = (_id, time) => {
      if (this.timings.firstRemoteFrameAt !== null) return;
      this.timings.firstRemoteFrameAt = time;
      if (this.timings.joinClickedAt !== null) {
        this.timings.joinToFirstFrameMs = Math.round(time - this.timings.joinClickedAt);
      }
    };
  }

  /** Our microphone track, or null. */
  get micTrack() {
    return this.stream.getAudioTracks()[0] ?? null;
  }

  /** Our camera track, or null. */
  get cameraTrack() {
    return this.stream.getVideoTracks()[0] ?? null;
  }

  /** Joins (retrying while the server is unreachable). */
  async connect() {
    clearTimeout(this.retryTimer);
    if (this.state === 'left') return;
    this.state = this.attempt === 0 && this.rejoins === 0 ? 'joining' : 'reconnecting';
    const call = new Call({
      room: this.room,
      name: this.name,
      secret: this.secret,
      token: this.token,
      sources: { audio: this.micTrack, camera: this.cameraTrack, screen: this.screen.track },
      e2ee: this.e2ee,
      handlers: this.#handlers(),
    });
    this.call = call;
    try {
      await call.join();
    } catch (error) {
      if (this.call !== call || this.state === 'left') return;
      call.dispose();
      this.call = null;
      if (TRANSIENT_CODES.has(error.code)) {
        this.#scheduleRetry(
          error.code === 'unreachable'
            ? 'Cannot reach the Sealed server. Check your network connection.'
            : error.code === 'cluster_unavailable'
              ? 'The server is moving this meeting to another machine.'
              : 'The server closed the connection.',
        );
      } else {
        this.state = 'failed';
        this.onRefused?.(error);
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
    this.screen.stop();
    for (const track of this.stream.getTracks()) track.stop();
  }

  /** Mutes or unmutes our microphone ('audio') or camera ('video'). */
  setTrackEnabled(kind, enabled) {
    for (const track of this.stream.getTracks()) if (track.kind === kind) track.enabled = enabled;
    this.call?.announceMuted(kind === 'audio' ? 'audio' : 'camera', !enabled);
    this.view.setSelfMuted(kind, !enabled);
  }

  /**
   * Uses another camera ('video') or microphone ('audio') from now on: opens it,
   * hands its track to the same sender (`replaceTrack`, no renegotiation) and
   * stops the old one. Rejects like getUserMedia; the old device stays then.
   */
  async switchDevice(kind, deviceId) {
    const old = kind === 'audio' ? this.micTrack : this.cameraTrack;
    const track = await openDevice(kind, deviceId);
    this.#useLocalTrack(kind, track, old);
    this.counters.deviceSwitches += 1;
  }

  /** Starts presenting (asks the person what to share). Resolves to null or a problem to show. */
  async startPresenting() {
    let track;
    try {
      track = await this.screen.start();
    } catch (error) {
      return shareErrorMessage(error);
    }
    this.presentingSince = performance.now();
    await this.call?.replaceTrack('screen', track);
    this.view.setScreen(null, track, '', this.presentingSince);
    this.#announceScreen();
    this.onChange();
    return null;
  }

  /** Stops presenting (also when the browser's own "Stop sharing" ended it). */
  stopPresenting() {
    const wasPresenting = this.view.layoutState().presenters.includes(null);
    this.screen.stop();
    this.call?.replaceTrack('screen', null).catch(() => {});
    this.view.setScreen(null, null);
    if (wasPresenting) this.#announce({ t: 'screen', track: null });
    this.onChange();
  }

  /** Raises or lowers our hand. */
  setHand(up) {
    this.hand = up;
    this.view.setSelfHand(up);
    this.#announce({ t: 'hand', up });
    this.onChange();
  }

  /**
   * Encrypts and sends a chat text to everyone else. Resolves to null, or to
   * why it was not sent.
   */
  async sendChat(body) {
    const error = await this.#sendChannel({ t: 'text', body });
    if (error === null) this.counters.chatSent += 1;
    return error;
  }

  /** What the tests and diagnostics want to know besides the E2EE status. */
  snapshot() {
    const remote = {};
    for (const [id, r] of this.remotes) {
      remote[id] = { hand: r.hand, screenTrack: r.screenTrack, tracks: [...r.tracks.keys()] };
    }
    return {
      presenting: this.screen.track !== null,
      hand: this.hand,
      rejoins: this.rejoins,
      chat: { ...this.counters, unread: this.chat.unread },
      layout: this.view.layoutState(),
      remote,
    };
  }

  #useLocalTrack(kind, track, old) {
    if (old) {
      track.enabled = old.enabled;
      this.stream.removeTrack(old);
    }
    this.stream.addTrack(track);
    this.#watchLocalTrack(track);
    this.call?.replaceTrack(kind === 'audio' ? 'audio' : 'camera', track).catch(() => {});
    if (kind === 'video') this.view.setSelfCamera(track);
    this.view.setSelfMuted(kind, !track.enabled);
    old?.stop();
    this.onChange();
  }

  /** A device in use went away (unplugged, or taken by the system): fall back to another one. */
  #watchLocalTrack(track) {
    track.addEventListener('ended', async () => {
      if (this.state === 'left' || !this.stream.getTracks().includes(track)) return;
      const kind = track.kind;
      const what = kind === 'audio' ? 'microphone' : 'camera';
      try {
        const next = await openDevice(kind);
        this.#useLocalTrack(kind, next, track);
        this.view.setBanner(`Your ${what} went away; switched to another one.`);
      } catch {
        this.stream.removeTrack(track);
        this.call?.replaceTrack(kind === 'audio' ? 'audio' : 'camera', null).catch(() => {});
        if (kind === 'video') this.view.setSelfCamera(null);
        this.view.setSelfMuted(kind, true);
        this.view.setBanner(`Your ${what} went away and no other one could be opened.`, 'bad');
        this.onChange();
      }
    });
  }

  #scheduleRetry(reason) {
    const delay = reconnectDelay(this.attempt);
    this.attempt += 1;
    this.state = 'reconnecting';
    this.#clearRemotes();
    this.view.setBanner(`${reason} Reconnecting…`, 'bad');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  #clearRemotes() {
    this.view.clearRemote();
    this.remotes.clear();
    this.pendingChat = [];
  }

  /** Sends one message of the encrypted chat channel; resolves to null or why not. */
  async #sendChannel(message) {
    let plaintext;
    try {
      plaintext = encodeChatMessage(message);
    } catch {
      return CHAT_SEND_ERRORS.too_large;
    }
    let payload;
    try {
      payload = await this.e2ee.encryptChat(plaintext);
    } catch (error) {
      return CHAT_SEND_ERRORS[error.message] ?? error.message;
    }
    if (!this.call?.sendChat(payload)) return 'not connected to the meeting';
    return null;
  }

  /** Tells everybody a state of ours (hand, screen); repeated on every new epoch for joiners. */
  #announce(message) {
    this.#sendChannel(message).then((error) => {
      if (error) console.warn('chat channel:', error);
    });
  }

  /** Says which track is our screen, and for how long it has been (orders several presenters). */
  #announceScreen() {
    const track = this.call?.publishedTrackId('screen');
    if (!this.screen.track || !track) return;
    this.#announce({ t: 'screen', track, for_ms: Math.round(performance.now() - this.presentingSince) });
  }

  #announceState() {
    if (this.hand) this.#announce({ t: 'hand', up: true });
    this.#announceScreen();
  }

  #onE2eeEvents(events) {
    if (events.some((e) => e.type === 'roster_mismatch')) {
      this.view.showE2eeStatus({ ...(this.lastStatus ?? {}), rosterMismatch: true });
    }
    // We send on a new epoch: whoever joined since can read our state now.
    if (events.some((e) => e.type === 'epoch_changed')) this.#announceState();
    if (events.some((e) => e.type === 'key_installed')) this.#retryPendingChat();
  }

  /**
   * Decrypts and acts on one chat payload. A payload under an epoch we do not
   * hold yet waits (until `until`, set on the first try) for the next key.
   */
  async #receiveChat(from, payload, until = null) {
    const result = await this.e2ee.decryptChat(from, payload);
    if (!this.remotes.has(from)) return;
    if (result.error) {
      const now = performance.now();
      if (result.error === 'unknown_epoch' && (until === null || now < until)) {
        if (until === null) setTimeout(() => this.#retryPendingChat(), CHAT_KEY_WAIT_MS + 50);
        this.pendingChat.push({ from, payload, until: until ?? now + CHAT_KEY_WAIT_MS });
        return;
      }
      this.counters.chatUndecryptable += 1;
      this.chat.addUndecryptable(this.view.nameOf(from), result.error);
      return;
    }
    const message = decodeChatMessage(result.plaintext);
    const remote = this.remotes.get(from);
    switch (message?.t) {
      case 'text':
        this.counters.chatReceived += 1;
        this.chat.add({ who: this.view.nameOf(from), text: message.body });
        break;
      case 'hand':
        remote.hand = message.up;
        this.view.setHand(from, message.up);
        break;
      case 'screen':
        remote.screenTrack = message.track;
        remote.screenSince = performance.now() - message.forMs;
        this.#showRemote(from);
        break;
      case 'other':
        break; // a newer page's message type
      default:
        this.counters.chatUndecryptable += 1;
        this.chat.addUndecryptable(this.view.nameOf(from), 'unreadable');
    }
  }

  #retryPendingChat() {
    const pending = this.pendingChat;
    this.pendingChat = [];
    // Past its wait, a payload that still fails is shown as undecryptable.
    for (const item of pending) this.#receiveChat(item.from, item.payload, item.until);
  }

  /** Shows participant `id`'s camera, sound and shared screen as far as we have them. */
  #showRemote(id) {
    const remote = this.remotes.get(id);
    if (!remote) return;
    let video = null;
    let audio = null;
    let screen = null;
    for (const [trackId, { kind, track }] of remote.tracks) {
      if (track.readyState === 'ended') continue;
      if (kind === 'audio') audio ??= track;
      else if (trackId === remote.screenTrack) screen = track;
      else video ??= track;
    }
    this.view.showParticipantMedia(id, { video, audio });
    this.view.setScreen(id, screen, this.view.nameOf(id), remote.screenSince);
  }

  #handlers() {
    const view = this.view;
    return {
      onWelcome: ({ ownId, participants }) => {
        this.#clearRemotes();
        view.setSelfId(ownId);
        for (const p of participants) {
          this.remotes.set(p.id, new Remote());
          view.addParticipant(p);
        }
        this.chat.note(
          this.rejoins === 0 && this.attempt === 0
            ? 'Messages are end-to-end encrypted. You see only those sent after you joined; earlier ones are not available to you.'
            : 'Reconnected. Messages sent while this browser was away are not available to it.',
        );
      },
      onParticipantJoined: (p) => {
        this.remotes.set(p.id, new Remote());
        view.addParticipant(p);
      },
      onParticipantLeft: (id) => {
        this.remotes.delete(id);
        view.removeParticipant(id);
      },
      onRemoteTrack: ({ participant, kind, trackId, track }) => {
        const remote = this.remotes.get(participant);
        if (!remote) return;
        remote.tracks.set(trackId, { kind, track });
        track.addEventListener('ended', () => this.#showRemote(participant));
        this.#showRemote(participant);
      },
      onTrackUnpublished: (participant, trackId) => {
        this.remotes.get(participant)?.tracks.delete(trackId);
        this.#showRemote(participant);
      },
      onTrackMuted: (id, kind, muted) => view.setTrackMuted(id, kind, muted),
      onActiveSpeakers: (ids) => view.setActiveSpeakers(ids),
      onChat: (from, payload) => {
        if (this.remotes.has(from)) this.#receiveChat(from, payload);
      },
      onServerError: (code, message) => {
        // A key message for someone who just left: harmless, the engine moves on.
        if (code === 'unknown_recipient') return;
        if (code === 'media_failed') {
          this.call?.dispose();
          this.call = null;
          this.rejoins += 1;
          this.#scheduleRetry('The media connection failed.');
          return;
        }
        view.setBanner(`The server reported a problem: ${message} (${code})`, 'bad');
      },
      onDisconnected: (reason, { noPath } = {}) => {
        // Rejoin as a new participant with a fresh identity; the others rotate keys.
        // `noPath`: the media never connected and `reason` explains it whole.
        this.call = null;
        this.rejoins += 1;
        this.#scheduleRetry(noPath ? reason : `Connection lost: ${reason}.`);
      },
    };
  }
}
