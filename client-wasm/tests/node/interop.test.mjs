// The engine's wasm build under Node: it must decrypt frames the native build made and
// make frames the native build decrypts.
//
// Needs the test build of the package (feature `test-api`: reproducible sessions and
// identities), which `cargo xtask test --only wasm` writes to target/wasm-test-pkg and names
// in SEALED_WASM_TEST_PKG, and cargo; run from the repo root:
//   SEALED_WASM_TEST_PKG=target/wasm-test-pkg node --test client-wasm/tests/node/
// It runs `cargo run -p client-wasm --example interop -- write|check target/interop` itself.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const pkgDir = path.resolve(root, process.env.SEALED_WASM_TEST_PKG ?? 'target/wasm-test-pkg');
const { initSync, Identity, Session } = await import(path.join(pkgDir, 'client_wasm.js'));
initSync({ module: fs.readFileSync(path.join(pkgDir, 'client_wasm_bg.wasm')) });

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
    const plain = b.decrypt(f.codec, hex(f.ciphertext), BigInt(fx.a.id));
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
