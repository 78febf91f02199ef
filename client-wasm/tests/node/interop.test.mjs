// The engine's wasm build under Node: it must decrypt frames the native build made and
// make frames the native build decrypts.
//
// Needs web/pkg (`cargo xtask build-web`) and cargo; run from the repo root:
//   node --test client-wasm/tests/node/
// It runs `cargo run -p client-wasm --example interop -- write|check target/interop` itself.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const pkg = path.join(root, 'web/pkg/client_wasm.js');
const { initSync, Identity, Session } = await import(pkg);
initSync({ module: fs.readFileSync(path.join(root, 'web/pkg/client_wasm_bg.wasm')) });

const dir = path.join(root, 'target/interop');
const hex = (s) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (u8) => Buffer.from(u8).toString('hex');

function interop(cmd) {
  execFileSync('cargo', ['run', '-q', '-p', 'client-wasm', '--example', 'interop', '--', cmd, dir], {
    cwd: root,
    stdio: 'inherit',
  });
}

test('wasm decrypts native frames and native decrypts wasm frames', () => {
  interop('write');
  const fx = JSON.parse(fs.readFileSync(path.join(dir, 'fixture.json'), 'utf8'));
  const ident = Identity.fromSecretBytes(hex(fx.b.secret_key));
  const b = Session.forTesting(fx.room, BigInt(fx.b.id), hex(fx.meeting_secret), ident,
    new TextEncoder().encode(fx.b.seed), 1000);
  b.memberJoined(1000, BigInt(fx.a.id), hex(fx.a.public_key));
  let now = 1000;
  for (const m of fx.to_b) {
    now = m.at;
    b.tick(now);
    b.receive(now, BigInt(fx.a.id), hex(m.payload));
  }
  b.tick(now + 2000);
  assert.equal(b.epoch(), fx.epoch);
  const events = b.drainEvents();
  assert.ok(events.some((e) => e.type === 'key_installed' && e.epoch === fx.epoch), JSON.stringify(events, (k, v) => typeof v === 'bigint' ? v.toString() : v));
  assert.ok(events.some((e) => e.type === 'epoch_changed'));
  const acks = b.drainOutgoing();
  assert.ok(acks.length >= 1 && acks.every((o) => o.to === 1n && o.payload instanceof Uint8Array));

  for (const f of fx.frames) {
    const plain = b.decrypt(f.codec, hex(f.ciphertext));
    assert.ok(plain instanceof Uint8Array, `frame ${f.codec} decrypted`);
    assert.equal(toHex(plain), f.plaintext);
  }
  assert.equal(b.counters().frames_decrypted, fx.frames.length);

  const replies = fx.frames.map((f) => {
    const plain = hex(f.plaintext);
    return { codec: f.codec, plaintext: f.plaintext, ciphertext: toHex(b.encrypt(f.codec, plain)) };
  });
  fs.writeFileSync(path.join(dir, 'replies.json'), JSON.stringify(replies));
  interop('check');
});

test('two wasm sessions key each other and talk', () => {
  const secret = new Uint8Array(32).fill(7);
  const ia = new Identity();
  const ib = new Identity();
  const a = new Session('room', 10n, secret, ia, 0);
  const b = new Session('room', 11n, secret, ib, 0);
  a.memberJoined(0, 11n, ib.publicKey());
  b.memberJoined(0, 10n, ia.publicKey());
  for (let now = 0; now < 3000; now += 20) {
    a.tick(now);
    b.tick(now);
    for (const o of a.drainOutgoing()) b.receive(now, 10n, o.payload);
    for (const o of b.drainOutgoing()) a.receive(now, 11n, o.payload);
  }
  assert.equal(typeof a.epoch(), 'number');
  assert.equal(a.epoch(), b.epoch());
  assert.equal(a.safetyNumber(), b.safetyNumber());
  assert.match(a.safetyNumber(), /^\d{4} \d{4} \d{4} \d{4} \d{4}$/);
  assert.equal(a.leader(), 10n);
  const frame = new Uint8Array([0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const ct = a.encrypt('vp8', frame);
  assert.deepEqual(ct.subarray(0, 10), frame.subarray(0, 10));
  assert.deepEqual(b.decrypt('vp8', ct), frame);
  // replay, garbage and tampering are dropped and counted, never thrown
  assert.equal(b.decrypt('vp8', ct), undefined);
  assert.equal(b.decrypt('opus', new Uint8Array([1, 2, 3])), undefined);
  const ct2 = a.encrypt('vp8', frame);
  const bad = ct2.slice();
  bad[bad.length - 1] ^= 1;
  assert.equal(b.decrypt('vp8', bad), undefined);
  assert.deepEqual(b.decrypt('vp8', ct2), frame);
  const c = b.counters();
  assert.equal(c.dropped_replay, 1);
  assert.equal(c.dropped_auth, 1);
  assert.equal(c.dropped_malformed + c.dropped_unknown_kid, 1);
  assert.equal(c.frames_decrypted, 2);
  b.receive(3000, 10n, new Uint8Array([1, 1, 0]));
  assert.equal(b.counters().messages_malformed, 1);
  assert.throws(() => a.encrypt('h264', frame));
});

test('without a meeting secret nothing is encrypted', () => {
  const s = new Session('room', 1n, undefined, new Identity(), 0);
  s.tick(5000);
  assert.equal(s.epoch(), undefined);
  assert.ok(s.drainEvents().some((e) => e.type === 'keys_unavailable'));
  assert.throws(() => s.encrypt('opus', new Uint8Array([1, 2])));
  assert.throws(() => new Session('room', 1n, new Uint8Array(5), new Identity(), 0));
});
