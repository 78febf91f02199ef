// The browser half of the E2EE alone, in each browser: two workers in one
// page, frames encrypted by one and decrypted by the other over a direct
// RTCPeerConnection. Needs only the server's static files.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launchChromium, launchFirefox } from './lib/browsers.js';
import { loopbackCall } from './lib/loopback.js';
import { startServer } from './lib/server.js';

for (const [name, launch] of [
  ['Chromium', launchChromium],
  ['Firefox', launchFirefox],
]) {
  test(`${name}: the worker encrypts and decrypts real frames`, { timeout: 90_000 }, async (t) => {
    const browser = await launch(t);
    const server = await startServer(t, { name: `loopback-${name.toLowerCase()}` });
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
    await page.goto(`${server.url}/bench.html`);
    const r = await page.evaluate(loopbackCall, 4);
    const from = r.receiver.participants['1'];
    console.log(`${name} loopback: ${r.framesDecoded} frames decoded;`, JSON.stringify({ send: r.sender.send, from, engine: r.receiver.engine, senderKeyframes: r.sender.keyframes, receiverKeyframes: r.receiver.keyframes }));
    assert.equal(r.sender.safetyNumber, r.receiver.safetyNumber);
    assert.ok(r.sender.send.video.encrypted > 30, 'video frames encrypted');
    assert.ok(r.sender.send.audio.encrypted > 50, 'audio frames encrypted');
    assert.ok(from.video.decrypted > 30, 'video frames decrypted');
    assert.ok(from.audio.decrypted > 50, 'audio frames decrypted');
    assert.equal(from.droppedByReason.auth + from.droppedByReason.other + from.droppedByReason.no_key, 0, 'no frame failed');
    assert.ok(r.framesDecoded > 30, `${r.framesDecoded} video frames decoded`);
  });
}
