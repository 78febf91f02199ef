// (3) One Chromium and one Firefox participant each decode the other's video
// and audio with zero decryption failures.

import { test } from 'node:test';

import { launchChromium, launchFirefox } from './lib/browsers.js';
import { bench, screenshot } from './lib/meeting.js';
import { meetAcrossBrowsers } from './lib/pair.js';
import { startServer } from './lib/server.js';

test('Chromium and Firefox decrypt each other', { timeout: 150_000 }, async (t) => {
  const [chromium, firefox] = await Promise.all([launchChromium(t), launchFirefox(t)]);
  const server = await startServer(t, { name: 'cross-browser' });
  const { c, f, timings } = await meetAcrossBrowsers(chromium, firefox, server.url);
  bench('join_to_first_frame_ms_firefox', timings.firefox);
  await screenshot(c, 'cross-browser-chromium');
  await screenshot(f, 'cross-browser-firefox');
});
