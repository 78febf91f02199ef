// A Chromium and a Firefox participant meeting on one server: join, decode each
// other's video and audio, zero decryption failures. Used by the cross-browser,
// relay and HTTPS tests.

import assert from 'node:assert/strict';

import { decrypted, echoConsole, inbound, joinMeeting, newMeetingLink, rtcStats, sleep, stats, waitFor } from './meeting.js';

/**
 * Opens a page in each browser, joins both into a new meeting on `url` and checks
 * that each decodes the other for 3 s. Returns `{ c, f, cId, fId, timings }` with
 * each side's join → first remote frame time.
 */
export async function meetAcrossBrowsers(chromium, firefox, url) {
  const c = await chromium.newPage();
  const f = await firefox.newPage();
  for (const page of [c, f]) await page.setViewport({ width: 1280, height: 720 });
  echoConsole(c, 'chromium');
  echoConsole(f, 'firefox');

  const link = await newMeetingLink(c, url);
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
      JSON.stringify(peer), 'keyframes', JSON.stringify(e2eeAfter[i].keyframes), 'path', JSON.stringify(rtcAfter[i].path));
    assert.ok(decoded >= 20, `${who} decoded only ${decoded} video frames in 3 s`);
    assert.ok(audio >= 50, `${who} decrypted only ${audio} audio frames in 3 s`);
    assert.equal(peer.droppedByReason.auth, 0, `${who} had frames fail authentication`);
    assert.equal(
      peer.droppedByReason.other,
      0,
      `${who} dropped frames it could not parse: ${JSON.stringify(peer.unparsed)}`,
    );
    assert.equal(peer.state, 'decrypting');
    assert.equal(e2eeAfter[i].send.video.failed + e2eeAfter[i].send.audio.failed, 0, `${who} failed to encrypt`);
  }
  assert.equal(e2eeAfter[0].safetyNumber, e2eeAfter[1].safetyNumber);
  return {
    c,
    f,
    cId,
    fId,
    rtc: rtcAfter,
    timings: { chromium: e2eeAfter[0].timings.joinToFirstFrameMs, firefox: e2eeAfter[1].timings.joinToFirstFrameMs },
  };
}
