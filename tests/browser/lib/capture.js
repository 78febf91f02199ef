// Screen sharing in headless browsers, and a picture to share whose pixels a
// receiver can check.
//
// Headless browsers show no picker, so the test replaces
// `navigator.mediaDevices.getDisplayMedia` (before the page loads) by the one
// path each browser has for sharing the tab itself: Chromium shares the
// current tab with `preferCurrentTab` (auto-accepted by
// `--auto-accept-this-tab-capture`), Firefox with getUserMedia's
// `mediaSource: 'browser'` (pref `media.getusermedia.browser.enabled`). The page
// code under test is unchanged: it still calls getDisplayMedia and gets a track.

/** The colours of the shared picture's four quadrants (top-left, top-right, bottom-left, bottom-right). */
export const PATTERN = Object.freeze([
  [230, 30, 30],
  [30, 200, 40],
  [30, 60, 230],
  [240, 220, 30],
]);

/** Makes `page`'s getDisplayMedia capture the tab itself (`browser`: 'chromium' | 'firefox'). */
export async function shareThisTab(page, browser) {
  await page.evaluateOnNewDocument((kind) => {
    const devices = navigator.mediaDevices;
    if (!devices) return;
    const original = devices.getDisplayMedia?.bind(devices);
    const getUserMedia = devices.getUserMedia.bind(devices);
    devices.getDisplayMedia = (constraints = {}) =>
      kind === 'firefox'
        ? getUserMedia({ video: { mediaSource: 'browser' } })
        : original({ ...constraints, preferCurrentTab: true });
  }, browser);
}

/**
 * Covers `page` with the four-colour pattern (over the meeting itself), with a
 * small ticking strip at the bottom so that the capture keeps producing frames
 * (tab capture sends a frame only when the page changes).
 */
export async function showPattern(page) {
  await page.evaluate((colours) => {
    const cover = document.createElement('div');
    cover.id = 'test-pattern';
    cover.style.cssText =
      'position:fixed;inset:0;z-index:2147483647;display:grid;grid-template:1fr 1fr/1fr 1fr;pointer-events:none';
    for (const [r, g, b] of colours) {
      const cell = document.createElement('div');
      cell.style.background = `rgb(${r},${g},${b})`;
      cover.append(cell);
    }
    const tick = document.createElement('div');
    tick.style.cssText = 'position:fixed;left:0;bottom:0;height:6px;width:0;background:#fff;z-index:2147483647';
    document.body.append(cover, tick);
    let n = 0;
    window.__patternTimer = setInterval(() => {
      n = (n + 1) % 50;
      tick.style.width = `${n * 2}%`;
    }, 100);
  }, PATTERN);
}

/** Takes the pattern away again. */
export async function hidePattern(page) {
  await page.evaluate(() => {
    clearInterval(window.__patternTimer);
    document.getElementById('test-pattern')?.remove();
  });
}

/**
 * Mean colour of each quadrant of what the <video> at `selector` shows (sampled
 * away from the edges), or null while it shows nothing.
 */
export function sampleQuadrants(page, selector) {
  return page.evaluate((sel) => {
    const video = document.querySelector(sel);
    if (!video || video.readyState < 2 || video.videoWidth === 0) return null;
    const canvas = document.createElement('canvas');
    canvas.width = 64;
    canvas.height = 64;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(video, 0, 0, 64, 64);
    const mean = (x0, y0) => {
      const { data } = ctx.getImageData(x0, y0, 16, 16);
      const sum = [0, 0, 0];
      for (let i = 0; i < data.length; i += 4) for (let c = 0; c < 3; c += 1) sum[c] += data[i + c];
      return sum.map((v) => Math.round(v / (data.length / 4)));
    };
    return [mean(8, 8), mean(40, 8), mean(8, 40), mean(40, 40)];
  }, selector);
}

/** True when every quadrant of `sample` is within `tolerance` of the pattern. */
export function matchesPattern(sample, tolerance = 60) {
  return (
    Array.isArray(sample) &&
    sample.every((rgb, i) => Math.hypot(...rgb.map((v, c) => v - PATTERN[i][c])) < tolerance)
  );
}
