// The encryption worker: one per page. It hosts the WASM E2EE session and
// every RTCRtpScriptTransform of the page (senders encrypt, receivers decrypt).
//
// Messages from the page (all carry `type`; requests with `reqId` get a reply):
//   identity {reqId}                       → {type:'reply', reqId, publicKey}
//   start {room, ownId, secret, members}   secret: Uint8Array(32) or null; members: [{id, publicKey}]
//   member_joined {id, publicKey} | member_left {id} | receive {from, payload}
//   status {reqId}                         → {type:'reply', reqId, status}
//   chat_encrypt {reqId, plaintext}        → {type:'reply', reqId, payload} or {…, error: code}
//   chat_decrypt {reqId, from, payload}    → {type:'reply', reqId, plaintext} or {…, error: code}
//   reset {}                               drops the session (leave / reconnect)
// Messages to the page:
//   ready | fatal {message} | outgoing {messages:[{to, payload}]} | events {events} | status {status}
//   (status.paused names why the engine refuses to send, e.g. 'rekey_overdue'; null otherwise)
//
// Ids cross postMessage as decimal strings (the engine wants BigInt, JSON
// wants numbers). Key material never leaves this worker.

import init, { Identity, Session } from './pkg/client_wasm.js';
import { frameCodec } from './js/codecs.js';
import { dropReasonOf, DropReason, ParticipantDecryptState } from './js/decrypt-state.js';

const TICK_INTERVAL_MS = 50;
const STATUS_INTERVAL_MS = 500;
const KEYFRAME_REQUEST_MIN_INTERVAL_MS = 300;

let identity = null;
let session = null;
let rosterMismatch = null;
let lastEpoch = null;

/** Remote participant id (string) → ParticipantDecryptState. */
const participants = new Map();
/** Live receive transforms: {transformer, kind, participant, wantsKeyframe, lastKeyframeRequestAt}. */
const receivers = new Set();
/** Live send transforms: {transformer, kind}. */
const senders = new Set();
const sendCounters = {
  audio: { encrypted: 0, droppedNoKey: 0, failed: 0 },
  video: { encrypted: 0, droppedNoKey: 0, failed: 0 },
};
// droppedNoKey also counts frames not sent while the engine pauses sending (a rekey after a
// leave is overdue, or the roster differs): see status().paused.
/** Keyframe requests made, and whether this browser's transformer offers the two calls. */
const keyframes = { requested: 0, generated: 0, unsupported: 0, canRequest: null, canGenerate: null };

const now = () => Math.round(performance.now());

// The path is explicit: the generated glue may be built without a default.
const ready = init({ module_or_path: new URL('./pkg/client_wasm_bg.wasm', import.meta.url) }).then(
  () => {
    self.postMessage({ type: 'ready' });
    return true;
  },
  (error) => {
    self.postMessage({ type: 'fatal', message: `encryption engine failed to load: ${error}` });
    return false;
  },
);

self.onmessage = async ({ data }) => {
  if (!(await ready)) return;
  try {
    handleMessage(data);
  } catch (error) {
    self.postMessage({ type: 'error', message: `${data?.type}: ${error?.message ?? error}` });
  }
};

function handleMessage(msg) {
  switch (msg.type) {
    case 'identity':
      identity?.free?.();
      identity = new Identity();
      self.postMessage({ type: 'reply', reqId: msg.reqId, publicKey: identity.publicKey() });
      break;
    case 'start':
      startSession(msg);
      break;
    case 'member_joined':
      session?.memberJoined(now(), BigInt(msg.id), msg.publicKey);
      flush();
      break;
    case 'member_left':
      session?.memberLeft(now(), BigInt(msg.id));
      participants.delete(String(msg.id));
      flush();
      break;
    case 'receive':
      session?.receive(now(), BigInt(msg.from), msg.payload);
      flush();
      break;
    case 'status':
      self.postMessage({ type: 'reply', reqId: msg.reqId, status: status() });
      break;
    case 'chat_encrypt':
      self.postMessage({ type: 'reply', reqId: msg.reqId, ...encryptChat(msg.plaintext) });
      break;
    case 'chat_decrypt':
      self.postMessage({ type: 'reply', reqId: msg.reqId, ...decryptChat(msg.from, msg.payload) });
      flush();
      break;
    case 'reset':
      resetSession();
      break;
    default:
      throw new Error(`unknown message type ${msg.type}`);
  }
}

function startSession({ room, ownId, secret, members }) {
  if (!identity) throw new Error('start before identity');
  resetSession();
  // The Session keeps its own copy of the key pair; ours is not needed again
  // (a reconnect makes a fresh identity).
  session = new Session(room, BigInt(ownId), secret ?? undefined, identity, now());
  identity.free();
  identity = null;
  for (const member of members) {
    try {
      session.memberJoined(now(), BigInt(member.id), member.publicKey);
    } catch (error) {
      self.postMessage({ type: 'error', message: `member ${member.id}: ${error?.message ?? error}` });
    }
  }
  flush();
}

/** `{payload}` or `{error}` (the engine's code) for a chat plaintext we send. */
function encryptChat(plaintext) {
  if (!session) return { error: 'not_sending' };
  if (typeof session.encryptChat !== 'function') return { error: 'unsupported' };
  try {
    return { payload: session.encryptChat(plaintext) };
  } catch (error) {
    return { error: error?.message ?? String(error) };
  }
}

/** `{plaintext}` or `{error}` (the engine's code) for a chat payload from `from`. */
function decryptChat(from, payload) {
  if (!session) return { error: 'unknown_epoch' };
  if (typeof session.decryptChat !== 'function') return { error: 'unsupported' };
  try {
    const result = session.decryptChat(Number(from), payload);
    return result.error ? { error: result.error } : { plaintext: result.plaintext };
  } catch (error) {
    return { error: error?.message ?? String(error) };
  }
}

function resetSession() {
  session?.free?.();
  session = null;
  rosterMismatch = null;
  lastEpoch = null;
  participants.clear();
}

/** Sends whatever the engine queued (key messages, events) to the page. */
function flush() {
  if (!session) return;
  const outgoing = session.drainOutgoing();
  if (outgoing.length > 0) {
    // Copied, not transferred: a payload might be a view the engine still owns.
    const messages = outgoing.map((m) => ({ to: m.to.toString(), payload: m.payload }));
    self.postMessage({ type: 'outgoing', messages });
  }
  const events = session.drainEvents();
  if (events.length === 0) return;
  let keysChanged = false;
  for (const event of events) {
    if (event.type === 'roster_mismatch') rosterMismatch = plain(event);
    // Sending resumes only once an epoch for our own view of the roster arrived.
    if (event.type === 'sending_resumed') rosterMismatch = null;
    if (event.type === 'key_installed' || event.type === 'epoch_changed') keysChanged = true;
    if (event.type === 'keyframe_needed') {
      const senders = new Set(Array.from(event.senders ?? [], String));
      for (const r of receivers) {
        if (r.kind === 'video' && senders.has(r.participant)) requestKeyframe(r);
      }
    }
  }
  if (keysChanged) onKeysChanged();
  self.postMessage({ type: 'events', events: events.map(plain) });
}

/** Makes an engine event safe to post (BigInt → string). */
function plain(value) {
  return JSON.parse(JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? v.toString() : v)));
}

function onKeysChanged() {
  // Receivers that dropped frames for want of a key can decode again now,
  // but only from a keyframe: ask their publishers for one at once.
  for (const r of receivers) {
    if (r.kind === 'video' && r.wantsKeyframe) requestKeyframe(r);
  }
  // When we get our first sending epoch, the keyframe our encoder made at
  // start was dropped: make a new one so others see us right away.
  const epoch = session?.epoch();
  if (epoch !== undefined && lastEpoch === null) {
    for (const s of senders) {
      if (s.kind === 'video') generateKeyframe(s);
    }
  }
  lastEpoch = epoch ?? lastEpoch;
}

function requestKeyframe(r) {
  const t = now();
  if (r.lastKeyframeRequestAt !== null && t - r.lastKeyframeRequestAt < KEYFRAME_REQUEST_MIN_INTERVAL_MS) {
    return;
  }
  r.lastKeyframeRequestAt = t;
  if (typeof r.transformer.sendKeyFrameRequest !== 'function') {
    keyframes.unsupported += 1;
    return;
  }
  keyframes.requested += 1;
  r.transformer.sendKeyFrameRequest().catch(() => {});
}

function generateKeyframe(s) {
  if (typeof s.transformer.generateKeyFrame !== 'function') {
    keyframes.unsupported += 1;
    return;
  }
  keyframes.generated += 1;
  s.transformer.generateKeyFrame().catch(() => {});
}

function participantState(id) {
  let state = participants.get(id);
  if (!state) {
    state = new ParticipantDecryptState();
    participants.set(id, state);
  }
  return state;
}

/** A frame's payload as a standalone ArrayBuffer (what `frame.data` accepts). */
function toArrayBuffer(bytes) {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes.buffer;
  return bytes.slice().buffer;
}

/** The browser's metadata of an encoded frame; `{}` where it offers none. */
function frameMetadata(frame) {
  try {
    return frame.getMetadata?.() ?? {};
  } catch {
    return {};
  }
}

function frameMime(frame) {
  return frameMetadata(frame).mimeType;
}

/**
 * What a received frame shows in the clear, for the record of unparsable frames: its
 * size, the codec we took it for, what the browser says it is, and its first byte (a
 * codec's clear header byte or the SFrame header's first byte; nothing encrypted).
 */
function describeFrame(frame, codec) {
  const metadata = frameMetadata(frame);
  const bytes = new Uint8Array(frame.data);
  return {
    bytes: bytes.byteLength,
    codec,
    mime: metadata.mimeType ?? null,
    payloadType: metadata.payloadType ?? null,
    firstByte: bytes.byteLength > 0 ? bytes[0] : null,
  };
}

function encryptFrame(sender, frame, controller) {
  const counters = sendCounters[sender.kind];
  if (!session || session.epoch() === undefined || session.paused() !== undefined) {
    counters.droppedNoKey += 1;
    return;
  }
  try {
    const codec = frameCodec(sender.kind, frameMime(frame));
    frame.data = toArrayBuffer(session.encrypt(codec, new Uint8Array(frame.data)));
    counters.encrypted += 1;
    controller.enqueue(frame);
  } catch {
    counters.failed += 1;
  }
}

function decryptFrame(receiver, frame, controller) {
  const state = participantState(receiver.participant);
  const t = now();
  if (!session) {
    state.recordDrop(receiver.kind, DropReason.NO_KEY, t);
    receiver.wantsKeyframe = true;
    return;
  }
  const codec = frameCodec(receiver.kind, frameMime(frame));
  let result;
  try {
    // The engine drops a frame whose key names anyone but this track's participant.
    result =
      receiver.sender === null
        ? 'wrong_sender'
        : session.decrypt(codec, new Uint8Array(frame.data), receiver.sender);
  } catch {
    // Not an engine code: counted as unparsable, and told apart in its description.
    result = 'threw';
  }
  if (typeof result === 'string') {
    const reason = dropReasonOf(result);
    if (reason === DropReason.OTHER) state.recordUnparsed(receiver.kind, { ...describeFrame(frame, codec), result }, t);
    else state.recordDrop(receiver.kind, reason, t);
    // A replayed copy changes nothing for the decoder; any other drop leaves a gap.
    if (reason !== DropReason.REPLAY) receiver.wantsKeyframe = true;
    return;
  }
  frame.data = toArrayBuffer(result);
  state.recordOk(receiver.kind, t);
  if (receiver.wantsKeyframe) {
    // Frames decrypt again after a gap: the decoder still needs a keyframe.
    receiver.wantsKeyframe = false;
    if (receiver.kind === 'video') requestKeyframe(receiver);
  }
  controller.enqueue(frame);
}

self.onrtctransform = ({ transformer }) => {
  const { side, kind, participant } = transformer.options ?? {};
  if (side === 'send') keyframes.canGenerate = typeof transformer.generateKeyFrame === 'function';
  else keyframes.canRequest = typeof transformer.sendKeyFrameRequest === 'function';
  let transform;
  let entry;
  if (side === 'send') {
    entry = { transformer, kind };
    senders.add(entry);
    transform = (frame, controller) => encryptFrame(entry, frame, controller);
  } else {
    entry = {
      transformer,
      kind,
      participant: String(participant),
      // Whose track this is (the publisher's id, first in the track's msid, as the SFU set
      // it); null if the page passed none we can read, and then every frame is dropped.
      sender: /^\d+$/.test(String(participant)) ? BigInt(participant) : null,
      wantsKeyframe: false,
      lastKeyframeRequestAt: null,
    };
    receivers.add(entry);
    transform = (frame, controller) => decryptFrame(entry, frame, controller);
  }
  transformer.readable
    .pipeThrough(new TransformStream({ transform }))
    .pipeTo(transformer.writable)
    .catch(() => {})
    .finally(() => {
      senders.delete(entry);
      receivers.delete(entry);
    });
};

function status() {
  const t = now();
  const perParticipant = {};
  for (const [id, state] of participants) perParticipant[id] = state.snapshot(t);
  return {
    active: session !== null,
    epoch: session?.epoch() ?? null,
    safetyNumber: session ? session.safetyNumber() : null,
    rosterMismatch,
    // Why the engine refuses to send ('rekey_overdue', 'roster_mismatch', 'epochs_exhausted').
    paused: session?.paused() ?? null,
    engine: session ? plain(session.counters()) : null,
    send: structuredClone(sendCounters),
    keyframes: { ...keyframes },
    transforms: { senders: senders.size, receivers: receivers.size },
    participants: perParticipant,
  };
}

setInterval(() => {
  if (!session) return;
  try {
    session.tick(now());
    flush();
  } catch (error) {
    self.postMessage({ type: 'error', message: `tick: ${error?.message ?? error}` });
  }
}, TICK_INTERVAL_MS);

setInterval(() => {
  if (session) self.postMessage({ type: 'status', status: status() });
}, STATUS_INTERVAL_MS);
