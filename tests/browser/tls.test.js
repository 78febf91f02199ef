// HTTPS in the binary: with a self-signed certificate (--tls-self-signed), Chromium
// trusted through its SPKI flag and Firefox accepting the certificate join over
// https/wss and decode each other.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launchChromium, launchFirefox } from './lib/browsers.js';
import { meetAcrossBrowsers } from './lib/pair.js';
import { startServer } from './lib/server.js';

test('Chromium and Firefox meet over HTTPS with a self-signed certificate', { timeout: 150_000 }, async (t) => {
  const server = await startServer(t, { name: 'tls', tls: true });
  assert.ok(server.url.startsWith('https://'));
  assert.match(server.spki ?? '', /^[A-Za-z0-9+/]{43}=$/, 'the server prints the SPKI hash');
  const [chromium, firefox] = await Promise.all([
    launchChromium(t, { spki: server.spki }),
    launchFirefox(t, { acceptInsecureCerts: true }),
  ]);
  const { c, f } = await meetAcrossBrowsers(chromium, firefox, server.url);
  for (const page of [c, f]) {
    assert.ok(page.url().startsWith('https://'), page.url());
    assert.equal(await page.evaluate(() => window.isSecureContext), true);
  }
});
