// Frame encryption benchmark (web/bench.html): the WASM engine's per-frame
// encrypt/decrypt next to WebCrypto AES-128-GCM on the same frames.
//
// performance.now() is coarse (up to 100 µs) in pages that are not
// cross-origin isolated, so each figure is the median over batches of the
// average time per frame in a batch.

import init, { Identity, Session } from '../pkg/client_wasm.js';

const SIZES = [1024, 30 * 1024];
const FRAMES_PER_BATCH = 100;
const BATCHES = 15;

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** A VP8 delta frame of `size` bytes (first byte's bit 0 set = not a keyframe). */
function frame(size) {
  const bytes = new Uint8Array(size);
  crypto.getRandomValues(bytes.subarray(0, Math.min(size, 65536)));
  bytes[0] |= 1;
  return bytes;
}

/** Two engine sessions of one meeting that have agreed on an epoch. */
function pairedSessions() {
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const alice = new Identity();
  const bob = new Identity();
  const alicePublic = alice.publicKey();
  const bobPublic = bob.publicKey();
  let now = 0;
  const a = new Session('bench', 1n, secret, alice, now);
  const b = new Session('bench', 2n, secret, bob, now);
  a.memberJoined(now, 2n, bobPublic);
  b.memberJoined(now, 1n, alicePublic);
  const probe = frame(64);
  for (let step = 0; step < 400; step += 1) {
    now += 50;
    a.tick(now);
    b.tick(now);
    for (const m of a.drainOutgoing()) if (m.to === 2n) b.receive(now, 1n, m.payload);
    for (const m of b.drainOutgoing()) if (m.to === 1n) a.receive(now, 2n, m.payload);
    a.drainEvents();
    b.drainEvents();
    if (a.epoch() !== undefined && a.epoch() === b.epoch()) {
      const roundTrip = b.decrypt('vp8', a.encrypt('vp8', probe), 1n);
      if (roundTrip instanceof Uint8Array) return { a, b };
    }
  }
  throw new Error('the two benchmark sessions never agreed on a key');
}

/** Median over batches of the mean time per call of `run(i)` (µs). */
async function measure(run) {
  const batches = [];
  for (let batch = 0; batch < BATCHES; batch += 1) {
    const start = performance.now();
    for (let i = 0; i < FRAMES_PER_BATCH; i += 1) await run(batch * FRAMES_PER_BATCH + i);
    batches.push(((performance.now() - start) * 1000) / FRAMES_PER_BATCH);
  }
  return Math.round(median(batches) * 10) / 10;
}

async function benchWasm({ a, b }, frames) {
  const encrypted = [];
  const encryptUs = await measure((i) => {
    encrypted[i] = a.encrypt('vp8', frames[i % frames.length]);
  });
  let failures = 0;
  const decryptUs = await measure((i) => {
    // As the worker calls it: bound to the track's sender; a string is a drop reason.
    if (typeof b.decrypt('vp8', encrypted[i], 1n) === 'string') failures += 1;
  });
  if (failures > 0) throw new Error(`${failures} WASM decryptions failed`);
  return { encryptUs, decryptUs };
}

async function benchWebCrypto(frames) {
  const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 128 }, false, ['encrypt', 'decrypt']);
  const ivs = [];
  const encrypted = [];
  const encryptUs = await measure(async (i) => {
    const iv = new Uint8Array(12);
    new DataView(iv.buffer).setUint32(8, i);
    ivs[i] = iv;
    encrypted[i] = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, frames[i % frames.length]);
  });
  const decryptUs = await measure(async (i) => {
    await crypto.subtle.decrypt({ name: 'AES-GCM', iv: ivs[i] }, key, encrypted[i]);
  });
  return { encryptUs, decryptUs };
}

/** Runs the whole benchmark; resolves to the figures (also shown on the page). */
export async function runBench() {
  await init({ module_or_path: new URL('../pkg/client_wasm_bg.wasm', import.meta.url) });
  const sessions = pairedSessions();
  const results = { userAgent: navigator.userAgent, framesPerBatch: FRAMES_PER_BATCH, batches: BATCHES, sizes: {} };
  for (const size of SIZES) {
    const frames = Array.from({ length: 16 }, () => frame(size));
    results.sizes[size] = {
      wasm: await benchWasm(sessions, frames),
      webcrypto: await benchWebCrypto(frames),
    };
  }
  return results;
}

window.runBench = runBench;
const button = document.getElementById('run');
button.onclick = async () => {
  button.disabled = true;
  const out = document.getElementById('results');
  out.textContent = 'running…';
  try {
    out.textContent = JSON.stringify(await runBench(), null, 2);
  } catch (error) {
    out.textContent = `failed: ${error.message}`;
  } finally {
    button.disabled = false;
  }
};
