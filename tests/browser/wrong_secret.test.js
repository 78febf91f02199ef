// (4) A participant whose link carries a different secret receives the
// packets but cannot decrypt them: it decodes (almost) nothing, says
// "cannot decrypt", and never shows the others' picture. The others are
// unaffected.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { randomBytes } from 'node:crypto';

import { launchChromium } from './lib/browsers.js';
import {
  decrypted,
  dropped,
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

test('a wrong secret gets packets but no picture', { timeout: 120_000 }, async (t) => {
  const browser = await launchChromium(t);
  const server = await startServer(t, { name: 'wrong-secret' });
  const [a, b, w] = await Promise.all([0, 1, 2].map(async () => (await browser.createBrowserContext()).newPage()));
  await w.setViewport({ width: 1280, height: 720 });
  const link = await newMeetingLink(a, server.url);
  const wrongLink = `${link.split('#')[0]}#${randomBytes(32).toString('base64url')}`;
  await joinMeeting(a, link, 'Ann');
  await joinMeeting(b, link, 'Ben');
  const aId = (await stats(a)).ownId;
  const bId = (await stats(b)).ownId;
  await joinMeeting(w, wrongLink, 'Wrong link');

  // W gets the others' media…
  await waitFor(async () => inbound(await rtcStats(w), aId, 'video', 'packetsReceived') > 100, {
    timeoutMs: 20_000,
    message: 'the wrong-secret participant to receive video packets',
  });
  // …and says it cannot decrypt them.
  await w.waitForFunction(
    (ids) =>
      ids.every((id) => document.querySelector(`.tile[data-participant="${id}"] .badge`)?.textContent === 'cannot decrypt'),
    { timeout: 15_000 },
    [aId, bId],
  );
  await sleep(1000);
  const sw = await stats(w);
  const rw = await rtcStats(w);
  for (const id of [aId, bId]) {
    const ok = decrypted(sw, id, 'video') + decrypted(sw, id, 'audio');
    const bad = dropped(sw, id, 'video') + dropped(sw, id, 'audio');
    const packets = inbound(rw, id, 'video', 'packetsReceived');
    const framesDecoded = inbound(rw, id, 'video', 'framesDecoded');
    console.log(`wrong secret, from ${id}: ${packets} video packets, ${ok} frames decrypted, ${bad} dropped, ${framesDecoded} decoded`);
    assert.ok(bad > 0, 'frames reached the worker');
    assert.ok(ok <= 0.1 * (ok + bad), `decrypted ${ok} of ${ok + bad} frames`);
    assert.ok(framesDecoded <= 0.1 * (ok + bad), `decoded ${framesDecoded} frames`);
    assert.equal(sw.participants[String(id)].state, 'failing');
    // Never the real picture: the remote <video> has nothing to show.
    const picture = await sampleVideo(w, `video[data-participant="${id}"]`);
    assert.equal(picture, null, `W shows a picture from ${id}: ${JSON.stringify(picture)}`);
  }
  assert.equal(await w.$eval('#no-key-warning', (el) => el.hidden), false, 'W explains what is wrong');
  await screenshot(w, 'wrong-secret');

  // Ann and Ben still see each other.
  const [sa, sb] = [await stats(a), await stats(b)];
  assert.equal(sa.participants[String(bId)].state, 'decrypting');
  assert.equal(sb.participants[String(aId)].state, 'decrypting');
  assert.equal(sa.safetyNumber, sb.safetyNumber);
});
