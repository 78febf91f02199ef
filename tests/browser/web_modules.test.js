// Unit tests of the page's pure modules (no browser needed).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { frameCodec, preferCodecs } from '../../web/js/codecs.js';
import {
  dropReasonOf,
  DECRYPTING_WINDOW_MS,
  DropReason,
  KEY_WAIT_LIMIT_MS,
  ParticipantDecryptState,
} from '../../web/js/decrypt-state.js';
import {
  decodeBase64Url,
  encodeBase64Url,
  isValidRoom,
  meetingLink,
  newMeetingSecret,
  newRoomId,
  parseMeetingLocation,
  ROOM_ID_LENGTH,
  SECRET_LENGTH,
} from '../../web/js/secret.js';
import { BADGE_TEXT, PAUSED_TITLE } from '../../web/js/meeting-view.js';
import { missingFeatures } from '../../web/js/support.js';

test('room ids are random, valid and of the promised length', () => {
  const ids = new Set();
  for (let i = 0; i < 200; i += 1) {
    const id = newRoomId();
    assert.equal(id.length, ROOM_ID_LENGTH);
    assert.ok(isValidRoom(id), id);
    ids.add(id);
  }
  assert.equal(ids.size, 200);
});

test('meeting secrets are 32 random bytes', () => {
  const a = newMeetingSecret();
  const b = newMeetingSecret();
  assert.equal(a.length, SECRET_LENGTH);
  assert.notDeepEqual(a, b);
});

test('base64url round-trips without padding and rejects other alphabets', () => {
  for (let length = 0; length < 40; length += 1) {
    const bytes = Uint8Array.from({ length }, (_, i) => (i * 37 + 251) & 255);
    const text = encodeBase64Url(bytes);
    assert.doesNotMatch(text, /[+/=]/);
    assert.deepEqual(decodeBase64Url(text), bytes);
    assert.equal(text, Buffer.from(bytes).toString('base64url'));
  }
  assert.throws(() => decodeBase64Url('ab+c'), TypeError);
  assert.throws(() => decodeBase64Url('a'), TypeError);
});

test('room names follow the protocol: 1..=64 of [A-Za-z0-9_-]', () => {
  assert.ok(isValidRoom('a'));
  assert.ok(isValidRoom('A-b_9'.padEnd(64, 'x')));
  assert.ok(!isValidRoom(''));
  assert.ok(!isValidRoom('x'.repeat(65)));
  assert.ok(!isValidRoom('a b'));
  assert.ok(!isValidRoom('ä'));
});

test('the address decides the view; the secret comes only from the fragment', () => {
  const secret = Uint8Array.from({ length: 32 }, (_, i) => i);
  const fragment = `#${encodeBase64Url(secret)}`;
  assert.deepEqual(parseMeetingLocation('/', ''), { view: 'landing' });
  assert.deepEqual(parseMeetingLocation('/m/abc_DEF-1', fragment), {
    view: 'meeting',
    room: 'abc_DEF-1',
    secret,
  });
  assert.equal(parseMeetingLocation('/m/abc/', fragment).room, 'abc');
  assert.deepEqual(parseMeetingLocation('/m/abc', ''), {
    view: 'meeting',
    room: 'abc',
    secret: null,
    problem: 'missing_secret',
  });
  assert.equal(parseMeetingLocation('/m/abc', '#').problem, 'missing_secret');
  assert.equal(parseMeetingLocation('/m/abc', '#not*base64').problem, 'malformed_secret');
  assert.equal(parseMeetingLocation('/m/abc', `#${encodeBase64Url(secret.slice(1))}`).problem, 'malformed_secret');
  assert.deepEqual(parseMeetingLocation('/m/a%20b', fragment), { view: 'bad_room' });
  assert.deepEqual(parseMeetingLocation('/m/', fragment), { view: 'bad_room' });
  assert.deepEqual(parseMeetingLocation('/m/%E0%A4%A', fragment), { view: 'bad_room' });
});

test('an invite link carries the secret in the fragment only', () => {
  const secret = newMeetingSecret();
  const link = new URL(meetingLink('https://sealed.example', 'room1', secret));
  assert.equal(link.pathname, '/m/room1');
  assert.equal(link.search, '');
  assert.deepEqual(decodeBase64Url(link.hash.slice(1)), secret);
});

test('codec preferences put the preferred codec first and remove nothing', () => {
  const codecs = [
    { mimeType: 'video/VP9' },
    { mimeType: 'video/rtx' },
    { mimeType: 'video/VP8' },
    { mimeType: 'video/H264' },
    { mimeType: 'video/vp8', sdpFmtpLine: 'x' },
  ];
  const ordered = preferCodecs(codecs, 'video/VP8');
  assert.deepEqual(
    ordered.map((c) => c.mimeType),
    ['video/VP8', 'video/vp8', 'video/VP9', 'video/rtx', 'video/H264'],
  );
  assert.equal(ordered.length, codecs.length);
});

test('a frame codec comes from the kind, refined by the MIME type', () => {
  assert.equal(frameCodec('audio', undefined), 'opus');
  assert.equal(frameCodec('audio', 'audio/opus'), 'opus');
  assert.equal(frameCodec('audio', 'audio/PCMU'), 'other');
  assert.equal(frameCodec('video', undefined), 'vp8');
  assert.equal(frameCodec('video', 'video/VP8'), 'vp8');
  assert.equal(frameCodec('video', 'video/H264'), 'other');
  assert.equal(frameCodec('data', undefined), 'other');
});

test('decrypt state: no media, decrypting, waiting for key, failing', () => {
  const s = new ParticipantDecryptState();
  assert.equal(s.state(0), 'no_media');
  s.recordDrop('video', DropReason.NO_KEY, 100);
  assert.equal(s.state(100), 'waiting_for_key');
  assert.equal(s.state(100 + KEY_WAIT_LIMIT_MS + 1), 'failing');
  s.recordOk('video', 200);
  assert.equal(s.state(250), 'decrypting');
  // Frames stopping after good ones do not make a failure.
  assert.equal(s.state(200 + 10 * DECRYPTING_WINDOW_MS), 'decrypting');
  s.recordDrop('audio', DropReason.AUTH, 300);
  assert.equal(s.state(300), 'decrypting', 'a recent good frame wins');
  assert.equal(s.state(200 + DECRYPTING_WINDOW_MS + 1), 'failing', 'a bad tag is a failure');
  const snap = s.snapshot(400);
  assert.deepEqual(snap.video, { decrypted: 1, dropped: 1 });
  assert.deepEqual(snap.audio, { decrypted: 0, dropped: 1 });
  assert.equal(snap.droppedByReason.no_key, 1);
  assert.equal(snap.droppedByReason.auth, 1);
});

test('decrypt state: a replayed copy is counted apart and changes nothing', () => {
  const s = new ParticipantDecryptState();
  s.recordOk('video', 100);
  s.recordDrop('video', DropReason.REPLAY, 150);
  assert.equal(s.state(150 + 10 * KEY_WAIT_LIMIT_MS), 'decrypting');
  const snap = s.snapshot(200);
  assert.deepEqual(snap.video, { decrypted: 1, dropped: 0 });
  assert.equal(snap.droppedByReason.replay, 1);
});

test('drops are named by the reason code the engine returns', () => {
  assert.equal(dropReasonOf('unknown_kid'), DropReason.NO_KEY);
  assert.equal(dropReasonOf('auth'), DropReason.AUTH);
  assert.equal(dropReasonOf('replay'), DropReason.REPLAY);
  assert.equal(dropReasonOf('wrong_sender'), DropReason.WRONG_SENDER);
  assert.equal(dropReasonOf('malformed'), DropReason.OTHER);
  assert.equal(dropReasonOf('something new'), DropReason.OTHER);
});

test('decrypt state: frames under another sender\'s key make the tile fail at once', () => {
  const s = new ParticipantDecryptState();
  s.recordDrop('video', DropReason.WRONG_SENDER, 100);
  assert.equal(s.state(200), 'failing');
  assert.equal(s.snapshot(200).droppedByReason.wrong_sender, 1);
});

test('the E2EE panel names every reason the engine pauses sending for', () => {
  // The engine's PauseReason codes (client-wasm/src/epoch.rs).
  assert.deepEqual(Object.keys(PAUSED_TITLE).sort(), ['epochs_exhausted', 'rekey_overdue', 'roster_mismatch']);
  assert.equal(PAUSED_TITLE.rekey_overdue, 'Waiting for new key — not sending');
  for (const title of Object.values(PAUSED_TITLE)) assert.match(title, /not sending/);
  assert.match(BADGE_TEXT.self_paused, /not sending/);
  assert.match(BADGE_TEXT.self_blocked, /not sending/);
});

test('missing browser features are named', () => {
  const full = {
    isSecureContext: true,
    RTCPeerConnection() {},
    RTCRtpScriptTransform() {},
    Worker() {},
    WebAssembly: {},
    navigator: { mediaDevices: { getUserMedia() {} } },
  };
  assert.deepEqual(missingFeatures(full), []);
  const old = { ...full, RTCRtpScriptTransform: undefined };
  assert.deepEqual(missingFeatures(old), ['encoded transforms (RTCRtpScriptTransform)']);
  assert.equal(missingFeatures({}).length, 6);
});
