// The server process restarts on the same port mid-meeting: every participant
// (Chromium and Firefox) is back in the meeting and decoding the others within
// 10 s, without any click. The rejoin is a new participant with a fresh
// identity, so the keys rotate as for any leave and join.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launchChromium, launchFirefox } from './lib/browsers.js';
import { bench, echoConsole, inbound, joinMeeting, newMeetingLink, rtcStats, screenshot, stats, waitFor } from './lib/meeting.js';
import { startServer } from './lib/server.js';

/** True when every page is joined and decodes video from every other page's current id. */
async function allDecoding(pages) {
  const ids = [];
  for (const page of pages) {
    const st = await stats(page);
    if (st?.connection !== 'joined' || st.ownId === null) return false;
    ids.push(st.ownId);
  }
  for (const [i, page] of pages.entries()) {
    const rtc = await rtcStats(page);
    for (const [j, id] of ids.entries()) {
      if (i !== j && inbound(rtc, id, 'video', 'framesDecoded') === 0) return false;
    }
  }
  return true;
}

/** What each page knows and receives, for a failure message. */
async function describe(pages) {
  const lines = [];
  for (const [i, page] of pages.entries()) {
    const st = await stats(page).catch((e) => ({ error: e.message }));
    const rtc = await rtcStats(page).catch(() => null);
    const video = (rtc?.inbound ?? [])
      .filter((s) => s.kind === 'video')
      .map((s) => `${s.participant}:pkts=${s.packetsReceived},frames=${s.framesReceived},decoded=${s.framesDecoded},key=${s.keyFramesDecoded}`);
    const e2ee = Object.entries(st?.participants ?? {}).map(
      ([id, p]) => `${id}:${p.state},video dec=${p.video?.decrypted} drop=${p.video?.dropped} ${JSON.stringify(p.droppedByReason)}`,
    );
    lines.push(
      `page ${i}: id=${st?.ownId} connection=${st?.connection} epoch=${st?.epoch} paused=${st?.paused ?? null} mismatch=${st?.rosterMismatch ?? null} ` +
        `pcs=${rtc?.publishState}/${rtc?.subscribeState} video in [${video.join(' ')}] e2ee [${e2ee.join('; ')}] out ${JSON.stringify(rtc?.outbound)} sub ${rtc?.subscribeSignaling} ${JSON.stringify(rtc?.subscribeTransceivers)} ${JSON.stringify(rtc?.subscribeSections)}`,
    );
  }
  return lines.join('\n');
}

test('a server restart on the same port: everyone back and decoding within 10 s', { timeout: 150_000 }, async (t) => {
  const [chromium, firefox] = await Promise.all([launchChromium(t), launchFirefox(t)]);
  const server = await startServer(t, { name: 'restart' });
  const pages = [
    await (await chromium.createBrowserContext()).newPage(),
    await (await chromium.createBrowserContext()).newPage(),
    await firefox.newPage(),
  ];
  for (const [i, page] of pages.entries()) echoConsole(page, ['Ann', 'Ben', 'Fay'][i]);
  const link = await newMeetingLink(pages[0], server.url);
  for (const [i, page] of pages.entries()) await joinMeeting(page, link, ['Ann', 'Ben', 'Fay'][i]);
  await waitFor(() => allDecoding(pages), { timeoutMs: 30_000, message: 'everyone to decode everyone' });
  const before = await Promise.all(pages.map(async (p) => (await stats(p)).ownId));

  await server.stop();
  const restartedAt = Date.now();
  const again = await startServer(t, { name: 'restart-again', port: server.port });
  assert.equal(again.port, server.port);
  const serverBackMs = Date.now() - restartedAt;
  try {
    await waitFor(() => allDecoding(pages), { timeoutMs: 10_000, intervalMs: 100, message: 'everyone back and decoding' });
  } catch (error) {
    throw new Error(`${error.message}\n${await describe(pages)}`);
  }
  const backMs = Date.now() - restartedAt;
  bench('server_restart_to_all_decoding_ms', backMs);
  console.log(`server answered again after ${serverBackMs} ms; everyone decoding after ${backMs} ms`);
  const after = await Promise.all(pages.map(async (p) => (await stats(p)).ownId));
  console.log(`ids ${before.join(',')} → ${after.join(',')}`);
  const sts = await Promise.all(pages.map((p) => stats(p)));
  assert.ok(sts.every((s) => s.safetyNumber === sts[0].safetyNumber), 'one safety number again');
  assert.ok(sts.every((s) => s.epoch !== null), 'everyone holds a key again');
  for (const page of pages) assert.equal(await page.$eval('#banner', (b) => b.hidden), true);
  await screenshot(pages[2], 'restart-firefox-back');
});
