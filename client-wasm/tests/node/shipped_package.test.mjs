// The shipped wasm package (web/pkg, as `cargo xtask build-web` makes it) under Node: it
// exports no test-only constructor, and its face behaves as the page relies on (keying,
// frames with typed drop reasons and sender binding, chat, the v2 safety number).
//
// Needs web/pkg; run from the repo root: node --test client-wasm/tests/node/

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const pkgDir = path.join(root, 'web/pkg');
const pkg = await import(path.join(pkgDir, 'client_wasm.js'));
pkg.initSync({ module: fs.readFileSync(path.join(pkgDir, 'client_wasm_bg.wasm')) });
const { Identity, Session } = pkg;

test('the shipped package exports no test-only API', () => {
  assert.equal(Session.forTesting, undefined);
  assert.equal(Identity.fromSecretBytes, undefined);
  const glue = fs.readFileSync(path.join(pkgDir, 'client_wasm.js'), 'utf8');
  const types = fs.readFileSync(path.join(pkgDir, 'client_wasm.d.ts'), 'utf8');
  for (const name of ['forTesting', 'fromSecretBytes', 'for_testing', 'from_secret_bytes']) {
    assert.ok(!glue.includes(name), `client_wasm.js mentions ${name}`);
    assert.ok(!types.includes(name), `client_wasm.d.ts mentions ${name}`);
  }
  // …while what the page uses is there.
  for (const name of ['encryptChat', 'decryptChat', 'paused', 'safetyNumber']) {
    assert.equal(typeof Session.prototype[name], 'function', name);
  }
});

/** Members with the given ids, keyed after 3 s of relayed messages. */
function meeting(ids, secret = new Uint8Array(32).fill(7)) {
  const members = ids.map((id) => ({ id, identity: new Identity() }));
  for (const m of members) m.session = new Session('room', m.id, secret, m.identity, 0);
  for (const m of members) {
    for (const o of members) {
      if (o !== m) m.session.memberJoined(0, o.id, o.identity.publicKey());
    }
  }
  const byId = new Map(members.map((m) => [m.id, m.session]));
  for (let now = 0; now < 3000; now += 20) {
    for (const m of members) m.session.tick(now);
    for (const m of members) {
      for (const o of m.session.drainOutgoing()) byId.get(o.to).receive(now, m.id, o.payload);
    }
  }
  return byId;
}

test('wasm sessions key each other, decrypt by track and report drops by reason', () => {
  const s = meeting([10n, 11n, 12n]);
  const [a, b] = [s.get(10n), s.get(11n)];
  assert.equal(typeof a.epoch(), 'number');
  assert.equal(a.epoch(), b.epoch());
  assert.equal(a.safetyNumber(), b.safetyNumber());
  assert.match(a.safetyNumber(), /^\d{5}( \d{5}){7}$/);
  assert.equal(a.leader(), 10n);
  assert.equal(a.paused(), undefined);
  const frame = new Uint8Array([0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const ct = a.encrypt('vp8', frame);
  assert.deepEqual(ct.subarray(0, 10), frame.subarray(0, 10));
  // Presented on 12's track: dropped, the frame names 10.
  assert.equal(b.decrypt('vp8', ct, 12n), 'wrong_sender');
  assert.deepEqual(b.decrypt('vp8', ct, 10n), frame);
  assert.equal(b.decrypt('vp8', ct, 10), 'replay', 'a number works as the id too');
  assert.equal(b.decrypt('opus', new Uint8Array([1]), 10n), 'malformed');
  assert.equal(b.decrypt('opus', new Uint8Array([1, 2, 3]), 10n), 'wrong_sender', 'KID 0 is nobody');
  const bad = a.encrypt('vp8', frame).slice();
  bad[bad.length - 1] ^= 1;
  assert.equal(b.decrypt('vp8', bad, 10n), 'auth');
  const c = b.counters();
  assert.equal(c.dropped_wrong_sender, 2);
  assert.equal(c.dropped_replay, 1);
  assert.equal(c.dropped_auth, 1);
  assert.equal(c.frames_decrypted, 1);
  b.receive(3000, 10n, new Uint8Array([2, 1, 0]));
  assert.equal(b.counters().messages_malformed, 1);
  assert.throws(() => a.encrypt('h264', frame));
});

test('chat: round trip, replay, wrong sender and tampering give codes, never throw', () => {
  const s = meeting([1n, 2n, 3n]);
  const text = new TextEncoder().encode('the plan is on slide 4');
  const payload = s.get(1n).encryptChat(text);
  assert.ok(payload instanceof Uint8Array);
  assert.deepEqual(s.get(2n).decryptChat(1n, payload).plaintext, text);
  assert.deepEqual(s.get(3n).decryptChat(1, payload).plaintext, text);
  assert.equal(s.get(2n).decryptChat(1n, payload).error, 'replay');
  assert.equal(s.get(3n).decryptChat(2n, s.get(1n).encryptChat(text)).error, 'auth');
  assert.equal(s.get(2n).decryptChat(9n, payload).error, 'unknown_sender');
  assert.equal(s.get(2n).decryptChat(1n, new Uint8Array(5)).error, 'malformed');
  assert.equal(s.get(2n).decryptChat('x', payload).error, 'unknown_sender');
  assert.throws(() => s.get(1n).encryptChat(new Uint8Array(4097)), /too_large/);
  const alone = new Session('room', 1n, undefined, new Identity(), 0);
  assert.throws(() => alone.encryptChat(text), /not_sending/);
});

test('without a meeting secret nothing is encrypted', () => {
  const s = new Session('room', 1n, undefined, new Identity(), 0);
  s.tick(5000);
  assert.equal(s.epoch(), undefined);
  assert.ok(s.drainEvents().some((e) => e.type === 'keys_unavailable'));
  assert.throws(() => s.encrypt('opus', new Uint8Array([1, 2])));
  assert.throws(() => new Session('room', 1n, new Uint8Array(5), new Identity(), 0));
});
