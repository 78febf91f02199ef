// Nine participants (seven Chromium, two Firefox) in one meeting: the grid
// renders all nine tiles on one laptop-sized page, without scrolling, names
// and states on every tile, and the participants whose cameras are on show
// decoded video everywhere. To fit nine browsers and the debug-build SFU on a
// two-core CI machine, cameras open at 160×90, 8 frames/s, and only Ada
// (Chromium) and Hal (Firefox) bring a camera and microphone; the others join
// without devices (their tiles show initials), as a person who blocked them would.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launchChromium, launchFirefox } from './lib/browsers.js';
import { joinMeeting, newMeetingLink, screenshot, stats, waitFor } from './lib/meeting.js';
import { startServer } from './lib/server.js';

/** Runs before the page: every camera opens at 160×90, 8 frames/s. */
function smallCameras() {
  const devices = navigator.mediaDevices;
  const getUserMedia = devices.getUserMedia.bind(devices);
  devices.getUserMedia = (constraints = {}) =>
    getUserMedia(
      constraints.video
        ? { ...constraints, video: { ...(constraints.video === true ? {} : constraints.video), width: 160, height: 90, frameRate: 8 } }
        : constraints,
    );
}

/** Runs before the page: the camera and microphone are refused. */
function noDevices() {
  navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
}

/** What the grid shows: tiles on the page, inside the viewport, with a picture. */
function gridReport(page) {
  return page.evaluate(() => {
    const grid = document.querySelector('#grid').getBoundingClientRect();
    const tiles = [...document.querySelectorAll('#grid .tile')].filter((t) => !t.hidden);
    return {
      tiles: tiles.length,
      inside: tiles.every((t) => {
        const r = t.getBoundingClientRect();
        return r.width > 100 && r.top >= grid.top - 1 && r.bottom <= grid.bottom + 1 && r.right <= grid.right + 1;
      }),
      names: tiles.map((t) => t.querySelector('.name')?.textContent),
      withPicture: tiles
        .filter((t) => {
          const v = t.querySelector('video');
          return !t.classList.contains('camera-off') && v && v.readyState >= 2 && v.videoWidth > 0;
        })
        .map((t) => t.querySelector('.name')?.textContent),
      scrolls: document.querySelector('#grid').scrollHeight > document.querySelector('#grid').clientHeight + 1,
    };
  });
}

async function joinWithoutDevices(page, link, name) {
  await page.goto(link);
  await page.waitForSelector('#join-without-devices', { visible: true, timeout: 15_000 });
  await page.type('#display-name', name);
  await page.click('#join-without-devices');
  await waitFor(async () => (await stats(page))?.ownId != null, { message: `${name} to be welcomed` });
}

test('a grid of 9 participants renders all tiles', { timeout: 240_000 }, async (t) => {
  const [chromium, firefox] = await Promise.all([launchChromium(t), launchFirefox(t)]);
  const server = await startServer(t, { name: 'grid' });
  const pages = [];
  for (let i = 0; i < 7; i += 1) pages.push(await (await chromium.createBrowserContext()).newPage());
  pages.push((await firefox.pages())[0] ?? (await firefox.newPage()), await firefox.newPage());
  const live = new Set([0, 7]);
  for (const [i, page] of pages.entries()) {
    await page.setViewport({ width: 1366, height: 768 });
    await page.evaluateOnNewDocument(live.has(i) ? smallCameras : noDevices);
  }
  const link = await newMeetingLink(pages[0], server.url);
  const names = ['Ada', 'Ben', 'Cy', 'Dee', 'Eve', 'Fin', 'Gus', 'Hal (Firefox)', 'Ivy (Firefox)'];
  for (const [i, page] of pages.entries()) {
    // Firefox opens the camera only for the tab in front.
    await page.bringToFront();
    const join = live.has(i) ? joinMeeting(page, link, names[i]) : joinWithoutDevices(page, link, names[i]);
    await join.catch(async (error) => {
      await screenshot(page, `grid-join-failed-${i}`);
      throw new Error(`${names[i]} could not join: ${error.message}`);
    });
  }

  for (const [i, page] of [
    [0, pages[0]],
    [7, pages[7]],
  ]) {
    let last = null;
    const report = await waitFor(
      async () => {
        last = await gridReport(page);
        const pictures = ['Ada', 'Hal (Firefox)'].every((n) => last.withPicture.some((w) => w.startsWith(n)));
        return last.tiles === 9 && pictures ? last : null;
      },
      { timeoutMs: 90_000, intervalMs: 500, message: `${names[i]} to show nine tiles with pictures` },
    ).catch(async (error) => {
      await screenshot(page, `grid-9-failed-${i}`);
      throw new Error(`${error.message}: ${JSON.stringify(last)}`);
    });
    console.log(`${names[i]}:`, JSON.stringify(report));
    assert.ok(report.inside && !report.scrolls, 'all nine tiles fit the page');
    for (const name of names) assert.ok(report.names.some((n) => n.startsWith(name)), `${name}'s tile`);
    assert.equal((await stats(page)).layout.pages, 1);
    await screenshot(page, i === 0 ? 'grid-9-chromium' : 'grid-9-firefox');
  }
});
