// Driving the meeting page like a person would, and reading what it reports.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ARTIFACTS } from './server.js';

/** Polls `check` until it returns a truthy value; throws `message` after `timeoutMs`. */
export async function waitFor(check, { timeoutMs = 15000, intervalMs = 200, message = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${message} (last: ${JSON.stringify(last)})`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Opens the landing page, clicks "New meeting" and returns the meeting link.
 * The page takes the secret out of the address bar at once and keeps it in
 * the tab's sessionStorage, which is where the test reads it back from.
 */
export async function newMeetingLink(page, baseUrl) {
  await page.goto(`${baseUrl}/`);
  await page.waitForSelector('#new-meeting', { visible: true });
  await Promise.all([page.waitForNavigation(), page.click('#new-meeting')]);
  // The pre-join form, or a notice (e.g. an unsupported browser): the page has read the link.
  await page.waitForSelector('#prejoin:not([hidden]), #notice:not([hidden])');
  const secret = await page.evaluate(() => {
    const room = location.pathname.split('/').pop();
    return sessionStorage.getItem(`sealed.secret.${room}`);
  });
  if (!secret) throw new Error(`the meeting page kept no secret (address: ${page.url()})`);
  return `${page.url()}#${secret}`;
}

/**
 * Opens `link`, waits for the camera preview, types `name`, switches the
 * microphone or camera off if asked, and clicks join.
 * Resolves once the server welcomed us (the page knows its participant id).
 */
export async function joinMeeting(page, link, name, { mic = true, camera = true } = {}) {
  // The page took the fragment out of the address bar: compare without it.
  if (page.url() !== link.split('#')[0]) await page.goto(link);
  await page.waitForSelector('#prejoin', { visible: true });
  await page.waitForFunction(
    () => {
      const v = document.querySelector('#preview-video');
      return v && v.srcObject && v.srcObject.getTracks().length === 2 && v.readyState >= 2;
    },
    { timeout: 15000 },
  );
  await page.type('#display-name', name);
  if (!mic) await page.click('#prejoin-mic');
  if (!camera) await page.click('#prejoin-camera');
  await page.click('#join-button');
  await page.waitForSelector('#meeting', { visible: true });
  await waitFor(async () => (await stats(page))?.ownId != null, { message: `${name} to be welcomed` });
}

/** Prints `page`'s uncaught errors, console warnings and errors, prefixed with `label`. */
export function echoConsole(page, label) {
  page.on('pageerror', (e) => console.log(`${label} page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn') console.log(`${label} console ${m.type()}: ${m.text()}`);
  });
}

/** The page's E2EE status (`window.sealedStats()`). */
export function stats(page) {
  return page.evaluate(() => window.sealedStats());
}

/** The page's WebRTC statistics (`window.sealedRtcStats()`). */
export function rtcStats(page) {
  return page.evaluate(() => window.sealedRtcStats());
}

/** Sum of a field over the inbound streams of `kind` from `participant`. */
export function inbound(rtc, participant, kind, field) {
  return (rtc?.inbound ?? [])
    .filter((s) => s.participant === participant && s.kind === kind)
    .reduce((sum, s) => sum + (s[field] ?? 0), 0);
}

/** Frames of `kind` from `participant` that the page's worker decrypted. */
export function decrypted(st, participant, kind) {
  return st?.participants?.[String(participant)]?.[kind]?.decrypted ?? 0;
}

/** Frames of `kind` from `participant` that the page's worker dropped. */
export function dropped(st, participant, kind) {
  return st?.participants?.[String(participant)]?.[kind]?.dropped ?? 0;
}

/**
 * Colour statistics of what a <video> shows right now (downscaled to 64x48):
 * mean R, G, B, luminance standard deviation, mean chroma (0 for pure grey)
 * and the number of distinct coarse colours. Null while it shows nothing.
 */
export function sampleVideo(page, selector) {
  return page.evaluate((sel) => {
    const video = document.querySelector(sel);
    if (!video || video.readyState < 2 || video.videoWidth === 0) return null;
    const canvas = document.createElement('canvas');
    canvas.width = 64;
    canvas.height = 48;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const n = data.length / 4;
    let r = 0;
    let g = 0;
    let b = 0;
    let chroma = 0;
    const lum = [];
    const colours = new Set();
    for (let i = 0; i < data.length; i += 4) {
      r += data[i];
      g += data[i + 1];
      b += data[i + 2];
      chroma += (Math.abs(data[i] - data[i + 1]) + Math.abs(data[i + 1] - data[i + 2]) + Math.abs(data[i + 2] - data[i])) / 3;
      lum.push(0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2]);
      colours.add(((data[i] >> 5) << 6) | ((data[i + 1] >> 5) << 3) | (data[i + 2] >> 5));
    }
    const meanLum = lum.reduce((s, v) => s + v, 0) / n;
    const lumStd = Math.sqrt(lum.reduce((s, v) => s + (v - meanLum) ** 2, 0) / n);
    return {
      width: video.videoWidth,
      height: video.videoHeight,
      r: r / n,
      g: g / n,
      b: b / n,
      lumStd,
      chroma: chroma / n,
      colours: colours.size,
    };
  }, selector);
}

/** Distance between two samples' mean colours (0 = same). */
export function colourDistance(a, b) {
  return Math.hypot(a.r - b.r, a.g - b.g, a.b - b.b);
}

/** Saves a screenshot under tests/browser/artifacts and returns its path. */
export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

/** Prints a measured figure in the one format the lead collects. */
export function bench(name, value) {
  console.log(`BENCH ${name}=${value}`);
}

/**
 * Starts measuring, inside `page`, the longest time the tile of each
 * participant in `ids` goes without a new video frame (sampling the video
 * element's decoded-frame count every 20 ms, so the figure is not blurred by
 * the test's own polling). `stop()` resolves to the longest gap in ms over all
 * of them, counting a gap still open at the end.
 */
export async function watchVideoStalls(page, ids) {
  await page.evaluate((watched) => {
    const last = new Map();
    const state = { longest: 0 };
    const frames = (id) => {
      const video = document.querySelector(`video[data-participant="${id}"]`);
      return video?.getVideoPlaybackQuality?.().totalVideoFrames ?? 0;
    };
    const sample = () => {
      const now = performance.now();
      for (const id of watched) {
        const count = frames(id);
        const seen = last.get(id);
        if (!seen) {
          last.set(id, { count, at: now });
        } else if (count !== seen.count) {
          state.longest = Math.max(state.longest, now - seen.at);
          last.set(id, { count, at: now });
        }
      }
    };
    sample();
    const timer = setInterval(sample, 20);
    window.__sealedStallWatch = () => {
      clearInterval(timer);
      sample();
      const now = performance.now();
      for (const seen of last.values()) state.longest = Math.max(state.longest, now - seen.at);
      return Math.round(state.longest);
    };
  }, ids.map(String));
  return { stop: () => page.evaluate(() => window.__sealedStallWatch()) };
}
