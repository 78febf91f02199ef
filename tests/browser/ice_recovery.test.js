// The media path breaks while the signaling socket stays up (a network change):
// the SFU's UDP ports go dark for a few seconds. Both pages (Chromium and
// Firefox) notice their media connections are lost, rejoin by themselves as new
// participants — so the keys rotate as for any leave and join — and decode each
// other again once UDP is back. Nobody clicks anything.
//
// The test runs in a network namespace of its own (lib/netns.js), where an
// nftables input rule can drop UDP without touching anything else on the machine.

import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { launchChromium, launchFirefox } from './lib/browsers.js';
import { dropOnInput, insideNamespace, runInNamespace } from './lib/netns.js';
import { bench, inbound, joinMeeting, newMeetingLink, rtcStats, screenshot, sleep, stats, waitFor } from './lib/meeting.js';
import { startServer } from './lib/server.js';

const OUTAGE_MS = 8000;

/** True when both pages are joined and decode each other's video (current ids). */
async function bothDecoding(a, b) {
  const [sa, sb] = [await stats(a), await stats(b)];
  if (sa?.connection !== 'joined' || sb?.connection !== 'joined') return false;
  return (
    inbound(await rtcStats(a), sb.ownId, 'video', 'framesDecoded') > 0 &&
    inbound(await rtcStats(b), sa.ownId, 'video', 'framesDecoded') > 0
  );
}

if (!insideNamespace) {
  // Outside: run this very file again inside a fresh network namespace.
  test('media path lost while signaling stays up: rejoin, rotate, recover', { timeout: 200_000 }, (t) => {
    runInNamespace(t, fileURLToPath(import.meta.url), 190_000);
  });
} else {
  test('inside the namespace: drop the SFU’s UDP, then bring it back', { timeout: 180_000 }, async (t) => {
    const [chromium, firefox] = await Promise.all([launchChromium(t), launchFirefox(t)]);
    const server = await startServer(t, { name: 'ice-recovery' });
    const ann = await chromium.newPage();
    const fay = await firefox.newPage();
    const link = await newMeetingLink(ann, server.url);
    await joinMeeting(ann, link, 'Ann');
    await joinMeeting(fay, link, 'Fay');
    await waitFor(() => bothDecoding(ann, fay), { timeoutMs: 30_000, message: 'both to decode each other' });
    const before = { ann: await stats(ann), fay: await stats(fay) };

    const [low, high] = server.udpPorts;
    const restore = dropOnInput(t, 'udp', 'dport', `${low}-${high}`);
    const cutAt = Date.now();
    // The pages notice the lost media (not the socket: it stays open) and rejoin.
    await waitFor(async () => (await stats(ann)).rejoins > 0 && (await stats(fay)).rejoins > 0, {
      timeoutMs: 30_000,
      message: 'both pages to give up on their media connections',
    });
    const noticedMs = Date.now() - cutAt;
    await sleep(Math.max(0, OUTAGE_MS - noticedMs));
    restore();
    const restoredAt = Date.now();
    await waitFor(() => bothDecoding(ann, fay), { timeoutMs: 30_000, intervalMs: 200, message: 'both to decode again' });
    const recoveredMs = Date.now() - restoredAt;
    const after = { ann: await stats(ann), fay: await stats(fay) };
    console.log(`noticed the lost media after ${noticedMs} ms; decoding again ${recoveredMs} ms after UDP came back;`,
      `ids ${before.ann.ownId},${before.fay.ownId} → ${after.ann.ownId},${after.fay.ownId};`,
      `epochs ${before.ann.epoch} → ${after.ann.epoch}`);
    bench('ice_loss_noticed_ms', noticedMs);
    bench('ice_loss_recovered_after_udp_back_ms', recoveredMs);
    assert.notEqual(after.ann.ownId, before.ann.ownId, 'Ann rejoined as a new participant');
    assert.notEqual(after.fay.ownId, before.fay.ownId, 'Fay rejoined as a new participant');
    assert.equal(after.ann.safetyNumber, after.fay.safetyNumber);
    assert.equal(after.ann.epoch, after.fay.epoch, 'one epoch again');
    assert.notEqual(after.ann.safetyNumber, before.ann.safetyNumber, 'fresh identities, new keys');
    await screenshot(fay, 'ice-recovery-firefox');
  });
}
