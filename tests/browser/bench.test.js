// (5b) WASM per-frame encrypt/decrypt inside Chromium next to WebCrypto
// AES-GCM on the same frames. A measurement, not a timed assertion.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launchChromium } from './lib/browsers.js';
import { bench } from './lib/meeting.js';
import { startServer } from './lib/server.js';

test('frame encryption cost in Chromium: WASM engine vs WebCrypto', { timeout: 180_000 }, async (t) => {
  const browser = await launchChromium(t);
  const server = await startServer(t, { name: 'bench' });
  const page = await browser.newPage();
  await page.goto(`${server.url}/bench.html`);
  await page.waitForFunction(() => typeof window.runBench === 'function', { timeout: 15_000 });
  const results = await page.evaluate(() => window.runBench());
  console.log(JSON.stringify(results, null, 2));
  for (const [size, r] of Object.entries(results.sizes)) {
    const kb = Math.round(Number(size) / 1024);
    bench(`chromium_wasm_encrypt_${kb}k_us`, r.wasm.encryptUs);
    bench(`chromium_wasm_decrypt_${kb}k_us`, r.wasm.decryptUs);
    bench(`chromium_webcrypto_encrypt_${kb}k_us`, r.webcrypto.encryptUs);
    bench(`chromium_webcrypto_decrypt_${kb}k_us`, r.webcrypto.decryptUs);
    for (const v of [r.wasm.encryptUs, r.wasm.decryptUs, r.webcrypto.encryptUs, r.webcrypto.decryptUs]) {
      assert.ok(Number.isFinite(v) && v > 0, 'a measured time');
    }
  }
});
