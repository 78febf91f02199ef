// Device switching while joined, in Chromium and Firefox: a new camera or
// microphone goes out on the same sender (replaceTrack, no renegotiation) and
// the far side keeps decoding; a camera that goes away is replaced by another
// one. Also the layouts: pin a participant to the stage and back.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launchChromium, launchFirefox } from './lib/browsers.js';
import { decrypted, inbound, joinMeeting, newMeetingLink, rtcStats, screenshot, stats, waitFor } from './lib/meeting.js';
import { startServer } from './lib/server.js';

const idOf = async (page) => (await stats(page)).ownId;

/** Waits until `viewer` decoded `n` more video frames and decrypted audio from `sender`. */
async function keepsDecoding(viewer, sender, label, n = 30) {
  const id = await idOf(sender);
  const video = inbound(await rtcStats(viewer), id, 'video', 'framesDecoded');
  const audio = decrypted(await stats(viewer), id, 'audio');
  let last = null;
  try {
    await waitFor(
      async () => {
        last = [inbound(await rtcStats(viewer), id, 'video', 'framesDecoded') - video, decrypted(await stats(viewer), id, 'audio') - audio];
        return last[0] > n && last[1] > n;
      },
      { timeoutMs: 20_000, message: `${label}: the far side to keep decoding` },
    );
  } catch (error) {
    const st = await stats(viewer);
    throw new Error(`${error.message}: new video frames, audio frames ${JSON.stringify(last)}; ${JSON.stringify(st.participants[String(id)])} ${JSON.stringify((await rtcStats(sender)).outbound)}`);
  }
}

/**
 * Chooses a camera or microphone picker option that is not in use (or the same
 * one if it is the only one), never Chromium's fake depth camera (see lib/browsers.js).
 */
async function switchTo(page, selectId) {
  await page.click('#toggle-devices');
  const choice = await page.$eval(`#${selectId}`, (select) => {
    const usable = [...select.options].filter((o) => o.textContent !== 'fake_device_1');
    const other = usable.find((o) => o.value !== select.value) ?? select.options[0];
    select.value = other.value;
    select.dispatchEvent(new Event('change'));
    return { value: other.value, options: select.options.length };
  });
  await page.click('#toggle-devices');
  return choice;
}

/** The device id of `page`'s camera track. */
const cameraDevice = (page) =>
  page.evaluate(() => document.querySelector('.tile.self video').srcObject?.getVideoTracks()[0]?.getSettings().deviceId);

test('switching devices mid-meeting keeps the far side decoding; pinning', { timeout: 180_000 }, async (t) => {
  const [chromium, firefox] = await Promise.all([launchChromium(t), launchFirefox(t)]);
  const server = await startServer(t, { name: 'devices' });
  const ann = await (await chromium.createBrowserContext()).newPage();
  const fay = await firefox.newPage();
  for (const page of [ann, fay]) {
    page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  }
  const link = await newMeetingLink(ann, server.url);
  await joinMeeting(ann, link, 'Ann');
  await joinMeeting(fay, link, 'Fay');
  await keepsDecoding(fay, ann, 'before any switch');
  await keepsDecoding(ann, fay, 'before any switch');

  // Chromium switches camera (two fake cameras) and microphone.
  const before = await cameraDevice(ann);
  const camera = await switchTo(ann, 'meeting-camera');
  await waitFor(async () => (await stats(ann)).chat.deviceSwitches >= 1, { message: 'Ann’s camera switch' });
  assert.equal(camera.options, 3, 'Chromium lists its three fake cameras');
  assert.notEqual(await cameraDevice(ann), before, 'another camera is in use');
  await keepsDecoding(fay, ann, 'after Chromium switched camera');
  await switchTo(ann, 'meeting-mic');
  await waitFor(async () => (await stats(ann)).chat.deviceSwitches >= 2, { message: 'Ann’s microphone switch' });
  await keepsDecoding(fay, ann, 'after Chromium switched microphone');

  // Firefox switches camera (its fake camera may be the only one: reopened all the same).
  await switchTo(fay, 'meeting-camera');
  await waitFor(async () => (await stats(fay)).chat.deviceSwitches >= 1, { message: 'Fay’s camera switch' });
  await keepsDecoding(ann, fay, 'after Firefox switched camera');

  // The camera in use goes away (unplugged: the browser ends its track).
  await ann.evaluate(() => {
    document.querySelector('.tile.self video').srcObject.getVideoTracks()[0].dispatchEvent(new Event('ended'));
  });
  await waitFor(async () => /camera went away; switched/.test(await ann.$eval('#banner', (b) => b.textContent)), {
    message: 'Ann’s page to switch to another camera',
  });
  await keepsDecoding(fay, ann, 'after Chromium’s camera went away');

  for (const [page, who] of [
    [ann, 'Chromium'],
    [fay, 'Firefox'],
  ]) {
    const rtc = await rtcStats(page);
    assert.equal(rtc.publishOffers, 1, `${who} renegotiated its publish connection`);
    assert.equal((await stats(page)).rejoins, 0, `${who} rejoined`);
  }

  // Pin Fay at Ann: she takes the stage; unpin: back to the grid.
  const fayId = await idOf(fay);
  await ann.click(`.tile[data-participant="${fayId}"] .pin`);
  assert.equal((await stats(ann)).layout.stage, `person:${fayId}`);
  await screenshot(ann, 'pinned-firefox-participant');
  await ann.click(`.tile[data-participant="${fayId}"] .pin`);
  assert.equal((await stats(ann)).layout.stage, null);
  // Speaker view: the stage follows who speaks (the fake microphones beep).
  await ann.click('#toggle-layout');
  assert.equal((await stats(ann)).layout.speakerView, true);
  await screenshot(ann, 'speaker-view');
});
