// Screen sharing across Chromium and Firefox, end-to-end encrypted like the
// camera: the receivers decode the shared surface (a four-colour pattern,
// checked pixel by pixel), switch to the presenter layout and back when it
// stops — also when the browser's own "Stop sharing" ends it — a participant
// who joins mid-share sees it, and two presenters at once work (the latest
// one holds the stage).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { grantMedia, launchChromium, launchFirefox } from './lib/browsers.js';
import { hidePattern, matchesPattern, sampleQuadrants, shareThisTab, showPattern } from './lib/capture.js';
import { echoConsole, joinMeeting, newMeetingLink, rtcStats, screenshot, stats, waitFor } from './lib/meeting.js';
import { startServer } from './lib/server.js';

const stageOf = async (page) => (await stats(page)).layout.stage;

/** The presenter's participant id right now (a page that lost its media rejoins with a new one). */
const idOf = async (page) => (await stats(page)).ownId;

/** Waits until `viewer` shows `presenter`'s screen on its stage with the test pattern. */
async function seesPattern(viewer, presenter, label) {
  let last = null;
  let selector = null;
  try {
    await waitFor(
      async () => {
        selector = `#stage video[data-screen="${await idOf(presenter)}"]`;
        last = await sampleQuadrants(viewer, selector);
        return matchesPattern(last);
      },
      { timeoutMs: 30_000, message: `${label} to decode the shared pattern` },
    );
  } catch (error) {
    const probe = await viewer.evaluate((sel) => {
      const v = document.querySelector(sel);
      return JSON.stringify({ found: !!v, rs: v?.readyState, w: v?.videoWidth, all: [...document.querySelectorAll('video')].map((x) => [x.dataset.screen, x.dataset.participant, x.readyState]) });
    }, selector);
    const presenterId = await idOf(presenter).catch(() => null);
    const rtc = await rtcStats(viewer).catch(() => null);
    const e2ee = await stats(viewer).catch(() => null);
    const sent = await rtcStats(presenter).catch(() => null);
    const detail = JSON.stringify({
      inbound: (rtc?.inbound ?? []).filter((s) => s.participant === presenterId),
      remote: e2ee?.remote?.[String(presenterId)],
      e2ee: e2ee?.participants?.[String(presenterId)],
      presenterOutbound: sent?.outbound,
      transceivers: rtc?.subscribeTransceivers,
      signaling: rtc?.subscribeSignaling,
      sections: rtc?.subscribeSections,
    });
    throw new Error(`${error.message}; last sample ${JSON.stringify(last)} ${probe} ${detail}`);
  }
  return last;
}

/** Frames of `presenter`'s screen track that `viewer` decoded. */
async function screenFramesDecoded(viewer, presenter) {
  const presenterId = await idOf(presenter);
  const st = await stats(viewer);
  const trackId = st.remote[String(presenterId)]?.screenTrack;
  const rtc = await rtcStats(viewer);
  return (rtc?.inbound ?? [])
    .filter((s) => s.participant === presenterId && s.trackId === trackId)
    .reduce((n, s) => n + s.framesDecoded, 0);
}

test('screen sharing: decoded pixels, presenter layout, late joiner, two presenters', { timeout: 240_000 }, async (t) => {
  const [chromium, firefox] = await Promise.all([launchChromium(t, { tabCapture: true }), launchFirefox(t)]);
  const server = await startServer(t, { name: 'screen-share' });
  const chromiumPage = async () => {
    const context = await chromium.createBrowserContext();
    await grantMedia(context, server.url);
    return context.newPage();
  };
  const ann = await chromiumPage(); // Chromium, presents first
  // Firefox shares its window's selected tab: use the first one, and keep it in front.
  const fay = (await firefox.pages())[0] ?? (await firefox.newPage()); // Firefox, presents second
  const cleo = await chromiumPage(); // joins mid-share
  for (const page of [ann, fay, cleo]) {
    await page.setViewport({ width: 1280, height: 720 });
  }
  for (const [page, label] of [[ann, 'Ann'], [fay, 'Fay'], [cleo, 'Cleo']]) echoConsole(page, label);
  await shareThisTab(ann, 'chromium');
  await shareThisTab(fay, 'firefox');

  const link = await newMeetingLink(ann, server.url);
  await joinMeeting(ann, link, 'Ann');
  await joinMeeting(fay, link, 'Fay');
  await waitFor(async () => (await stats(fay)).participants?.[String(await idOf(ann))]?.state === 'decrypting', {
    timeoutMs: 30_000,
    message: 'Fay to decrypt Ann',
  });
  assert.equal(await stageOf(fay), null, 'no stage before anyone presents');

  // Ann (Chromium) presents: Fay (Firefox) gets the presenter layout and the pattern.
  await showPattern(ann);
  await ann.click('#present');
  await waitFor(async () => (await stats(ann)).presenting, { message: 'Ann to present' });
  await waitFor(async () => (await stageOf(fay)) === `screen:${await idOf(ann)}`, {
    timeoutMs: 20_000,
    message: 'Fay to put Ann’s screen on the stage',
  });
  const atFay = await seesPattern(fay, ann, 'Fay (Firefox)');
  console.log('Fay sees Ann’s screen as', JSON.stringify(atFay));
  assert.equal((await rtcStats(ann)).publishOffers, 1, 'presenting did not renegotiate');
  await screenshot(fay, 'screen-share-firefox-sees-chromium');

  // Cleo joins mid-share and sees it.
  await joinMeeting(cleo, link, 'Cleo');
  await waitFor(async () => (await stageOf(cleo)) === `screen:${await idOf(ann)}`, {
    timeoutMs: 20_000,
    message: 'the late joiner to put Ann’s screen on the stage',
  });
  await seesPattern(cleo, ann, 'Cleo (late joiner)');
  const before = await screenFramesDecoded(cleo, ann);
  await waitFor(async () => (await screenFramesDecoded(cleo, ann)) > before + 5, {
    message: 'the late joiner to keep decoding the screen',
  });
  await screenshot(cleo, 'screen-share-late-joiner');

  // Fay (Firefox) presents too: the latest presenter wins the stage, Ann's screen stays in the strip.
  await showPattern(fay);
  await fay.bringToFront();
  await fay.click('#present');
  await waitFor(async () => (await stageOf(cleo)) === `screen:${await idOf(fay)}`, {
    timeoutMs: 20_000,
    message: 'Cleo to put the latest presenter on the stage',
  });
  await seesPattern(cleo, fay, 'Cleo watching Firefox');
  await seesPattern(ann, fay, 'Ann (Chromium) watching Firefox');
  const cleoLayout = (await stats(cleo)).layout;
  assert.deepEqual(cleoLayout.presenters, [await idOf(ann), await idOf(fay)], 'ordered by when they started');
  assert.ok(cleoLayout.visibleTiles.includes(`screen:${await idOf(ann)}`), 'the other screen stays in the strip');
  await screenshot(cleo, 'screen-share-two-presenters');

  // The browser's own "Stop sharing" ends Ann's capture: it fires `ended` on the track.
  await hidePattern(ann);
  await ann.evaluate(() => {
    const video = document.querySelector('video[data-screen="self"]');
    video.srcObject.getVideoTracks()[0].dispatchEvent(new Event('ended'));
  });
  await waitFor(async () => !(await stats(ann)).presenting, { message: 'Ann to stop presenting' });
  await waitFor(async () => !(await stats(cleo)).layout.presenters.includes(await idOf(ann)), {
    message: 'Cleo to drop Ann’s screen',
  });
  assert.equal(await stageOf(cleo), `screen:${await idOf(fay)}`);

  // Fay stops with the button: everyone is back to the grid.
  await hidePattern(fay);
  await fay.click('#present');
  for (const [page, who] of [
    [ann, 'Ann'],
    [cleo, 'Cleo'],
    [fay, 'Fay'],
  ]) {
    await waitFor(async () => (await stageOf(page)) === null, { message: `${who}'s layout to return to the grid` });
  }
  assert.equal(await cleo.$$eval('#stage video', (v) => v.length), 0);
  assert.equal((await rtcStats(fay)).publishOffers, 1, 'Firefox presenting did not renegotiate');
  await screenshot(cleo, 'screen-share-stopped');
});
