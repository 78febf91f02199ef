// Unit tests of the page's pure modules (no browser needed).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { frameCodec, preferCodecs } from '../../web/js/codecs.js';
import { describePaths, failureMessage, pathKind, selectedPath } from '../../web/js/connection-info.js';
import {
  dropReasonOf,
  DECRYPTING_WINDOW_MS,
  DropReason,
  KEY_WAIT_LIMIT_MS,
  ParticipantDecryptState,
  UNPARSED_KEPT,
} from '../../web/js/decrypt-state.js';
import {
  decodeBase64Url,
  encodeBase64Url,
  isValidRoom,
  meetingLink,
  newMeetingSecret,
  newRoomId,
  forgetSecret,
  parseMeetingLocation,
  recallSecret,
  ROOM_ID_LENGTH,
  SECRET_LENGTH,
  takeMeetingSecret,
} from '../../web/js/secret.js';
import { BADGE_TEXT, PAUSED_TITLE } from '../../web/js/meeting-view.js';
import { missingFeatures } from '../../web/js/support.js';
import { decodeChatMessage, encodeChatMessage, MAX_CHAT_PLAINTEXT, undecryptableText } from '../../web/js/chat.js';
import { chooseStage, gridShape, pageCount, pageItems, PAGE_SIZE, SpeakerTracker } from '../../web/js/layout.js';
import { RECONNECT_MAX_DELAY_MS, reconnectDelay } from '../../web/js/reconnect.js';
import { msidsByMid, sectionSummary } from '../../web/js/sdp.js';

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

test('unparsable frames are counted and the latest few described', () => {
  const s = new ParticipantDecryptState();
  for (let i = 0; i < UNPARSED_KEPT + 2; i++) {
    s.recordUnparsed('audio', { bytes: i, codec: 'opus', mime: 'audio/opus', payloadType: 111, firstByte: null }, 100 + i);
  }
  const snap = s.snapshot(200);
  assert.equal(snap.droppedByReason.other, UNPARSED_KEPT + 2);
  assert.equal(snap.audio.dropped, UNPARSED_KEPT + 2);
  assert.deepEqual(
    snap.unparsed.map((u) => u.bytes),
    Array.from({ length: UNPARSED_KEPT }, (_, i) => i + 2),
  );
  assert.equal(snap.unparsed[0].kind, 'audio');
  assert.equal(snap.unparsed[0].at, 102);
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

test('the media path is read from the selected candidate pair', () => {
  assert.equal(pathKind({ candidateType: 'host', protocol: 'udp' }), 'direct-udp');
  assert.equal(pathKind({ candidateType: 'srflx', protocol: 'udp' }), 'direct-udp');
  assert.equal(pathKind({ candidateType: 'host', protocol: 'tcp' }), 'direct-tcp');
  assert.equal(pathKind({ candidateType: 'relay', protocol: 'udp', relayProtocol: 'tls' }), 'relay-tls');
  assert.equal(pathKind({ candidateType: 'relay', protocol: 'udp', relayProtocol: 'tcp' }), 'relay-tcp');
  assert.equal(pathKind({ candidateType: 'relay', protocol: 'udp' }), 'relay-udp');
  assert.equal(pathKind(undefined), null);

  // Chromium: the transport names the selected pair.
  const chromium = new Map([
    ['T1', { type: 'transport', selectedCandidatePairId: 'P2' }],
    ['P1', { type: 'candidate-pair', localCandidateId: 'L1', remoteCandidateId: 'R1', state: 'failed' }],
    ['P2', { type: 'candidate-pair', localCandidateId: 'L2', remoteCandidateId: 'R1', state: 'succeeded' }],
    ['L1', { type: 'local-candidate', candidateType: 'host', protocol: 'udp' }],
    ['L2', { type: 'local-candidate', candidateType: 'relay', protocol: 'udp', relayProtocol: 'udp' }],
    ['R1', { type: 'remote-candidate', candidateType: 'host', protocol: 'udp' }],
  ]);
  const path = selectedPath(chromium);
  assert.equal(path.kind, 'relay-udp');
  assert.match(path.label, /Relayed/);
  assert.equal(path.remote.type, 'host');
  // Firefox: the pair says it is selected.
  const firefox = new Map([
    ['P1', { type: 'candidate-pair', localCandidateId: 'L1', remoteCandidateId: 'R1', selected: true }],
    ['L1', { type: 'local-candidate', candidateType: 'host', protocol: 'tcp' }],
    ['R1', { type: 'remote-candidate', candidateType: 'host', protocol: 'tcp' }],
  ]);
  assert.equal(selectedPath(firefox).kind, 'direct-tcp');
  assert.equal(selectedPath(new Map()), null);

  const direct = selectedPath(firefox);
  assert.equal(describePaths({ publish: null, subscribe: null }), 'Connecting…');
  assert.equal(describePaths({ publish: direct, subscribe: direct }), 'Direct (TCP)');
  assert.equal(describePaths({ publish: path, subscribe: direct }), `Sending: ${path.label}. Receiving: Direct (TCP).`);
});

test('a media failure is explained in words a person can act on', () => {
  const withRelay = failureMessage({ relayOffered: true });
  assert.match(withRelay, /relay/);
  assert.match(withRelay, /another network/);
  const withoutRelay = failureMessage({ relayOffered: false });
  assert.match(withoutRelay, /offers no relay/);
});

/** A tab's address bar, history entry and sessionStorage, as far as secret.js uses them. */
function fakeTab(href) {
  const url = new URL(href);
  const items = new Map();
  const tab = {
    location: { pathname: url.pathname, search: url.search, hash: url.hash },
    replaced: [],
    history: {
      state: null,
      replaceState(state, _unused, path) {
        tab.replaced.push(path);
        const next = new URL(path, url);
        tab.location = { pathname: next.pathname, search: next.search, hash: next.hash };
      },
    },
    storage: {
      getItem: (k) => (items.has(k) ? items.get(k) : null),
      setItem: (k, v) => items.set(k, String(v)),
      removeItem: (k) => items.delete(k),
    },
    items,
  };
  return tab;
}

test('the secret leaves the address bar once read, and a reload of that tab finds it again', () => {
  const secret = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
  const tab = fakeTab(`https://sealed.example/m/team?token=t0#${encodeBase64Url(secret)}`);
  const first = takeMeetingSecret(tab);
  assert.deepEqual(first, { view: 'meeting', room: 'team', secret });
  assert.deepEqual(tab.replaced, ['/m/team?token=t0'], 'fragment gone, query kept');
  assert.equal(tab.location.hash, '');
  assert.deepEqual(recallSecret(tab.storage, 'team'), secret);
  // The reload: no fragment any more, the tab's storage has it.
  const again = takeMeetingSecret(tab);
  assert.deepEqual(again, { view: 'meeting', room: 'team', secret });
  assert.equal(recallSecret(tab.storage, 'other'), null, 'kept per room');
  // Leaving forgets it: the next reload asks for the link.
  forgetSecret(tab.storage, 'team');
  assert.equal(tab.items.size, 0);
  assert.equal(takeMeetingSecret(tab).problem, 'missing_secret');
});

test('a damaged secret is not kept, and unusable storage only costs the reload', () => {
  const tab = fakeTab('https://sealed.example/m/team#tooShort');
  assert.equal(takeMeetingSecret(tab).problem, 'malformed_secret');
  assert.equal(tab.items.size, 0);
  assert.deepEqual(tab.replaced, []);
  const broken = fakeTab(`https://sealed.example/m/team#${encodeBase64Url(new Uint8Array(32))}`);
  broken.storage = {
    getItem() {
      throw new Error('denied');
    },
    setItem() {
      throw new Error('denied');
    },
    removeItem() {
      throw new Error('denied');
    },
  };
  assert.equal(takeMeetingSecret(broken).secret.length, 32);
  assert.equal(broken.location.hash, '', 'still out of the address bar');
  assert.equal(takeMeetingSecret(broken).problem, 'missing_secret');
  assert.deepEqual(takeMeetingSecret(fakeTab('https://sealed.example/')), { view: 'landing' });
});

test('the grid fits 25 tiles of 16:9 on one laptop-sized page and pages beyond', () => {
  // The grid area of a 1366 × 768 laptop screen (sidebar, bars and padding taken off).
  const shape = gridShape(25, 1030, 620, { gap: 8 });
  assert.deepEqual([shape.cols, shape.rows], [5, 5]);
  assert.ok(shape.cols * shape.tileWidth + 4 * 8 <= 1030);
  assert.ok(shape.rows * shape.tileHeight + 4 * 8 <= 620);
  assert.ok(shape.tileWidth >= 190, `tiles ${shape.tileWidth} px wide`);
  assert.deepEqual([gridShape(1, 1000, 600).cols, gridShape(2, 1600, 400).cols, gridShape(9, 1030, 620).cols], [1, 2, 3]);
  assert.equal(PAGE_SIZE, 25);
  assert.deepEqual([pageCount(0), pageCount(25), pageCount(26), pageCount(60)], [1, 1, 2, 3]);
  const ids = Array.from({ length: 60 }, (_, i) => i);
  assert.deepEqual(pageItems(ids, 2), ids.slice(50));
  assert.deepEqual(pageItems(ids, 9), ids.slice(50), 'a page past the end shows the last one');
});

test('the stage: a pin wins, then the latest presenter, then the speaker in speaker view', () => {
  assert.equal(chooseStage({}), null);
  assert.equal(chooseStage({ speaker: 3 }), null, 'grid view has no speaker stage');
  assert.equal(chooseStage({ speakerView: true, speaker: 3 }), 'person:3');
  assert.equal(chooseStage({ presenters: [4, 7], speakerView: true, speaker: 3 }), 'screen:7');
  assert.equal(chooseStage({ pinned: 'person:2', presenters: [4] }), 'person:2');
  const tracker = new SpeakerTracker(1000);
  assert.equal(tracker.update(5, 0), 5);
  assert.equal(tracker.update(6, 100), 5, 'a new speaker must hold the floor');
  assert.equal(tracker.update(null, 200), 5);
  assert.equal(tracker.update(6, 300), 5);
  assert.equal(tracker.update(6, 1400), 6);
  tracker.forget(6);
  assert.equal(tracker.current, null);
});

test('chat plaintext: the three message types round-trip; anything else is unreadable or ignored', () => {
  for (const m of [
    { t: 'text', body: 'Slides are up ✓' },
    { t: 'hand', up: true },
    { t: 'screen', track: '5f0c6e1a-9d', for_ms: 1200 },
    { t: 'screen', track: null },
  ]) {
    const back = decodeChatMessage(encodeChatMessage(m));
    assert.equal(back.t, m.t);
  }
  assert.deepEqual(decodeChatMessage(encodeChatMessage({ t: 'screen', track: 'x', for_ms: 5 })), { t: 'screen', track: 'x', forMs: 5 });
  assert.deepEqual(decodeChatMessage(encodeChatMessage({ t: 'text', body: 'hi' })), { t: 'text', body: 'hi' });
  assert.deepEqual(decodeChatMessage(encodeChatMessage({ t: 'poll', q: '?' })), { t: 'other' });
  const enc = new TextEncoder();
  for (const bad of ['not json', '[1]', '{"t":"text","body":"   "}', '{"t":"hand","up":"yes"}', '{"t":"screen","track":5}', '{"body":"x"}']) {
    assert.equal(decodeChatMessage(enc.encode(bad)), null, bad);
  }
  assert.equal(decodeChatMessage(Uint8Array.from([0xff, 0xfe])), null, 'not UTF-8');
  assert.throws(() => encodeChatMessage({ t: 'text', body: 'x'.repeat(MAX_CHAT_PLAINTEXT) }), RangeError);
  assert.match(undecryptableText('auth'), /^cannot decrypt/);
});

test('tracks are named by the msid of their media section', () => {
  const sdp = [
    'v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'a=mid:0', 'a=msid:7 a-track',
    'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:1', 'a=sendonly', 'a=msid:7 {cam-uuid}',
    'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:2', 'a=inactive', '',
  ].join('\r\n');
  const msids = msidsByMid(sdp);
  assert.deepEqual([...msids.keys()], ['0', '1']);
  assert.deepEqual(msids.get('1'), { stream: '7', track: '{cam-uuid}' });
});

test('media sections are summarised as mid, kind, direction and SSRCs', () => {
  const sdp = [
    'v=0', 's=-',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'a=mid:0', 'a=sendonly', 'a=ssrc:11 cname:x', 'a=ssrc:11 msid:7 a',
    'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:1', 'a=recvonly', '',
  ].join('\r\n');
  assert.deepEqual(sectionSummary(sdp), ['0 audio sendonly 11', '1 video recvonly ']);
  assert.deepEqual(sectionSummary(undefined), []);
});

test('reconnect delays grow, stay capped and are spread', () => {
  const low = (attempt) => reconnectDelay(attempt, () => 0);
  const high = (attempt) => reconnectDelay(attempt, () => 1);
  assert.deepEqual([low(0), high(0)], [125, 250]);
  assert.deepEqual([low(1), high(1), high(2)], [250, 500, 1000]);
  assert.equal(high(20), RECONNECT_MAX_DELAY_MS);
  assert.equal(low(20), RECONNECT_MAX_DELAY_MS / 2);
});
