// (1) Two participants in separate browser contexts join one meeting through
// the real server and page, see and hear each other, and agree on the safety
// number; the meeting secret never leaves the browsers. Also measures the time
// from clicking join to the first decoded remote frame.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launchChromium } from './lib/browsers.js';
import {
  bench,
  colourDistance,
  decrypted,
  inbound,
  joinMeeting,
  newMeetingLink,
  rtcStats,
  sampleVideo,
  screenshot,
  sleep,
  stats,
  waitFor,
} from './lib/meeting.js';
import { startServer } from './lib/server.js';

/** Records every URL, header and WebSocket frame a Chromium page sends. */
async function recordTraffic(page) {
  const sent = [];
  const cdp = await page.createCDPSession();
  await cdp.send('Network.enable');
  cdp.on('Network.requestWillBeSent', (e) => sent.push(e.request.url, JSON.stringify(e.request.headers)));
  cdp.on('Network.webSocketCreated', (e) => sent.push(e.url));
  cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => sent.push(JSON.stringify(e.request.headers)));
  cdp.on('Network.webSocketFrameSent', (e) => sent.push(e.response.payloadData));
  return sent;
}

test('two participants see and hear each other through the real server', { timeout: 120_000 }, async (t) => {
  const browser = await launchChromium(t);
  const server = await startServer(t, { name: 'two-party' });
  const alice = await (await browser.createBrowserContext()).newPage();
  const bob = await (await browser.createBrowserContext()).newPage();
  const traffic = [];
  for (const page of [alice, bob]) {
    await page.setViewport({ width: 1280, height: 720 });
    traffic.push(await recordTraffic(page));
    page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  }

  const link = await newMeetingLink(alice, server.url);
  const secretText = new URL(link).hash.slice(1);
  assert.match(secretText, /^[A-Za-z0-9_-]{43}$/, 'a 32-byte secret in base64url');
  await joinMeeting(alice, link, 'Alice');
  await joinMeeting(bob, link, 'Bob');
  const aliceId = (await stats(alice)).ownId;
  const bobId = (await stats(bob)).ownId;
  assert.notEqual(aliceId, bobId);

  await waitFor(
    async () =>
      inbound(await rtcStats(alice), bobId, 'video', 'framesDecoded') > 0 &&
      inbound(await rtcStats(bob), aliceId, 'video', 'framesDecoded') > 0,
    { timeoutMs: 20_000, message: 'both to decode the other’s video' },
  );
  const joinToFirstFrame = (await stats(bob)).timings.joinToFirstFrameMs;
  bench('join_to_first_frame_ms', joinToFirstFrame);
  assert.ok(Number.isFinite(joinToFirstFrame), 'the page measured join → first frame');

  const rtcBefore = [await rtcStats(alice), await rtcStats(bob)];
  const e2eeBefore = [await stats(alice), await stats(bob)];
  await sleep(3000);
  const rtcAfter = [await rtcStats(alice), await rtcStats(bob)];
  const e2eeAfter = [await stats(alice), await stats(bob)];

  const pairs = [
    ['Alice', 0, bobId],
    ['Bob', 1, aliceId],
  ];
  for (const [who, i, from] of pairs) {
    const decoded =
      inbound(rtcAfter[i], from, 'video', 'framesDecoded') - inbound(rtcBefore[i], from, 'video', 'framesDecoded');
    const audio = decrypted(e2eeAfter[i], from, 'audio') - decrypted(e2eeBefore[i], from, 'audio');
    const video = decrypted(e2eeAfter[i], from, 'video') - decrypted(e2eeBefore[i], from, 'video');
    console.log(`${who}: decoded ${decoded} video frames, decrypted ${video} video / ${audio} audio frames in 3 s`);
    assert.ok(decoded >= 30, `${who} decoded ${decoded} < 30 video frames in 3 s`);
    assert.ok(audio >= 50, `${who}'s worker decrypted only ${audio} audio frames in 3 s`);
    assert.equal(e2eeAfter[i].participants[String(from)].state, 'decrypting');
  }

  // The picture is the sender's camera, not grey noise: compare with the
  // sender's own preview (Chromium's fake camera draws a coloured pattern).
  for (const [viewer, sender, senderId] of [
    [alice, bob, bobId],
    [bob, alice, aliceId],
  ]) {
    const remote = await sampleVideo(viewer, `video[data-participant="${senderId}"]`);
    const local = await sampleVideo(sender, '.tile.self video');
    console.log('remote picture', JSON.stringify(remote), 'sender preview', JSON.stringify(local));
    assert.ok(remote && local, 'both pictures show');
    assert.ok(remote.lumStd > 8, `remote picture is flat (luminance std ${remote.lumStd})`);
    assert.ok(remote.chroma > 8, `remote picture is grey (chroma ${remote.chroma})`);
    assert.ok(remote.colours >= 3, `remote picture has ${remote.colours} colours`);
    assert.ok(colourDistance(remote, local) < 60, `remote colours differ from the sender's preview`);
  }

  const [sa, sb] = e2eeAfter;
  assert.match(sa.safetyNumber, /^\d{5}( \d{5}){7}$/, 'eight groups of five digits');
  assert.ok(!sa.paused && !sb.paused, 'both send');
  assert.equal(sa.safetyNumber, sb.safetyNumber, 'both show the same safety number');
  assert.equal(sa.shownSafetyNumber, sa.safetyNumber, 'the page shows the engine’s number');
  assert.equal(sb.shownSafetyNumber, sb.safetyNumber);
  assert.equal(sa.epoch, sb.epoch);
  assert.ok(!sa.rosterMismatch && !sb.rosterMismatch);

  // Muting shows on the other side (mute → track_muted relay).
  await alice.click('#toggle-mic');
  await bob.waitForFunction(
    (id) => {
      const icon = document.querySelector(`.tile[data-participant="${id}"] .state-icon`);
      return icon && !icon.hidden && icon.textContent === 'mic off';
    },
    { timeout: 10_000 },
    aliceId,
  );
  assert.equal(await alice.$eval('#toggle-mic', (b) => b.textContent), 'Unmute');

  await screenshot(alice, 'two-party-alice');
  await screenshot(bob, 'two-party-bob');

  // The secret stays in memory and in the tab's sessionStorage (for a reload),
  // never in localStorage, and is gone from the address bar.
  for (const page of [alice, bob]) {
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }));
    assert.ok(!stored.includes(secretText), 'secret in localStorage');
    assert.ok(!page.url().includes(secretText), 'secret in the address bar');
  }
  const sent = traffic.flat();
  assert.ok(sent.some((s) => s.includes('"type":"join"')), 'the recorder saw the join message');
  assert.ok(!sent.some((s) => s.includes(secretText)), 'the secret left the browser');
  assert.ok(!server.logs.join('').includes(secretText), 'the secret reached the server log');
});
