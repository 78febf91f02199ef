// (3) One Chromium and one Firefox participant each decode the other's video
// and audio with zero decryption failures.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launchChromium, launchFirefox } from './lib/browsers.js';
import {
  bench,
  decrypted,
  inbound,
  joinMeeting,
  newMeetingLink,
  rtcStats,
  screenshot,
  sleep,
  stats,
  waitFor,
} from './lib/meeting.js';
import { startServer } from './lib/server.js';

test('Chromium and Firefox decrypt each other', { timeout: 150_000 }, async (t) => {
  const [chromium, firefox] = await Promise.all([launchChromium(t), launchFirefox(t)]);
  const server = await startServer(t, { name: 'cross-browser' });
  const c = await chromium.newPage();
  const f = await firefox.newPage();
  for (const page of [c, f]) await page.setViewport({ width: 1280, height: 720 });
  for (const page of [c, f]) page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  f.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn') console.log(`firefox console ${m.type()}: ${m.text()}`);
  });

  const link = await newMeetingLink(c, server.url);
  await joinMeeting(c, link, 'Chromium user');
  await joinMeeting(f, link, 'Firefox user');
  const cId = (await stats(c)).ownId;
  const fId = (await stats(f)).ownId;

  await waitFor(
    async () =>
      inbound(await rtcStats(c), fId, 'video', 'framesDecoded') > 0 &&
      inbound(await rtcStats(f), cId, 'video', 'framesDecoded') > 0,
    { timeoutMs: 30_000, message: 'Chromium and Firefox to decode each other’s video' },
  );
  bench('join_to_first_frame_ms_firefox', (await stats(f)).timings.joinToFirstFrameMs);
  const rtcBefore = [await rtcStats(c), await rtcStats(f)];
  const e2eeBefore = [await stats(c), await stats(f)];
  await sleep(3000);
  const rtcAfter = [await rtcStats(c), await rtcStats(f)];
  const e2eeAfter = [await stats(c), await stats(f)];

  for (const [who, i, from] of [
    ['Chromium', 0, fId],
    ['Firefox', 1, cId],
  ]) {
    const decoded =
      inbound(rtcAfter[i], from, 'video', 'framesDecoded') - inbound(rtcBefore[i], from, 'video', 'framesDecoded');
    const audio = decrypted(e2eeAfter[i], from, 'audio') - decrypted(e2eeBefore[i], from, 'audio');
    const peer = e2eeAfter[i].participants[String(from)];
    console.log(`${who} receiving: decoded ${decoded} video frames, decrypted ${audio} audio frames in 3 s;`,
      JSON.stringify(peer), 'keyframes', JSON.stringify(e2eeAfter[i].keyframes));
    assert.ok(decoded >= 20, `${who} decoded only ${decoded} video frames in 3 s`);
    assert.ok(audio >= 50, `${who} decrypted only ${audio} audio frames in 3 s`);
    assert.equal(peer.droppedByReason.auth, 0, `${who} had frames fail authentication`);
    assert.equal(peer.droppedByReason.other, 0, `${who} dropped frames it could not parse`);
    assert.equal(peer.state, 'decrypting');
    assert.equal(e2eeAfter[i].send.video.failed + e2eeAfter[i].send.audio.failed, 0, `${who} failed to encrypt`);
  }
  assert.equal(e2eeAfter[0].safetyNumber, e2eeAfter[1].safetyNumber);
  await screenshot(c, 'cross-browser-chromium');
  await screenshot(f, 'cross-browser-firefox');
});
