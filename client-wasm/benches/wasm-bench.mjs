// WASM frame cost under Node: median time per encrypt/decrypt at 100 B, 1200 B, 30 KB, 100 KB.
// Needs web/pkg (`cargo xtask build-web`). Run from the repo root:
//   node client-wasm/benches/wasm-bench.mjs
// Each size: 15 rounds of a batch (sized to ~20 ms); the reported figure is the median
// round's time per frame.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { initSync, Identity, Session } = await import(path.join(root, 'web/pkg/client_wasm.js'));
initSync({ module: fs.readFileSync(path.join(root, 'web/pkg/client_wasm_bg.wasm')) });

const secret = new Uint8Array(32).fill(9);
const ia = new Identity();
const ib = new Identity();
const a = new Session('bench', 1n, secret, ia, 0);
const b = new Session('bench', 2n, secret, ib, 0);
a.memberJoined(0, 2n, ib.publicKey());
b.memberJoined(0, 1n, ia.publicKey());
for (let now = 0; now < 3000; now += 20) {
  a.tick(now);
  b.tick(now);
  for (const o of a.drainOutgoing()) b.receive(now, 1n, o.payload);
  for (const o of b.drainOutgoing()) a.receive(now, 2n, o.payload);
}
if (a.epoch() === undefined || a.epoch() !== b.epoch()) throw new Error('sessions did not key');

const median = (xs) => xs.slice().sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const ROUNDS = 15;

console.log('size_bytes  encrypt_us  decrypt_us  (median per frame, Node ' + process.version + ')');
for (const size of [100, 1200, 30_000, 100_000]) {
  const frame = new Uint8Array(size).fill(0x31);
  const batch = Math.max(20, Math.round(2_000_000 / (size + 2000)));
  const enc = [];
  const dec = [];
  for (let r = 0; r < ROUNDS + 2; r++) {
    const cts = new Array(batch);
    let t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) cts[i] = a.encrypt('vp8', frame);
    let t1 = process.hrtime.bigint();
    if (r >= 2) enc.push(Number(t1 - t0) / 1000 / batch);
    t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) {
      if (typeof b.decrypt('vp8', cts[i], 1n) === 'string') throw new Error('decrypt failed');
    }
    t1 = process.hrtime.bigint();
    if (r >= 2) dec.push(Number(t1 - t0) / 1000 / batch);
  }
  console.log(`${String(size).padStart(10)}  ${median(enc).toFixed(2).padStart(10)}  ${median(dec).toFixed(2).padStart(10)}`);
}
