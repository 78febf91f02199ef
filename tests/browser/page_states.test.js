// What a person sees when something is off: a link without its key, a
// damaged key, a browser without encoded transforms, a blocked camera, an
// unreachable server, a server restart (reconnect = rejoin with a new
// identity). Also checks the MIME types the page depends on.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launchChromium } from './lib/browsers.js';
import { inbound, joinMeeting, newMeetingLink, rtcStats, stats, waitFor } from './lib/meeting.js';
import { startServer } from './lib/server.js';

const text = (page, selector) => page.$eval(selector, (el) => el.textContent);
const visible = (page, selector) => page.waitForSelector(selector, { visible: true, timeout: 10_000 });

test('the page explains what is wrong', { timeout: 120_000 }, async (t) => {
  const browser = await launchChromium(t);
  const server = await startServer(t, { name: 'page-states' });

  await t.test('scripts, worker and wasm are served with working MIME types', async () => {
    for (const [path, type] of [
      ['/worker.js', /^text\/javascript/],
      ['/js/app.js', /^text\/javascript/],
      ['/pkg/client_wasm.js', /^text\/javascript/],
      ['/pkg/client_wasm_bg.wasm', /^application\/wasm/],
      ['/style.css', /^text\/css/],
      ['/m/abc', /^text\/html/],
    ]) {
      const response = await fetch(`${server.url}${path}`);
      assert.equal(response.status, 200, path);
      assert.match(response.headers.get('content-type') ?? '', type, path);
    }
  });

  await t.test('a link without a key', async () => {
    const page = await browser.newPage();
    await page.goto(`${server.url}/m/some-room`);
    await visible(page, '#notice');
    assert.equal(await text(page, '#notice-title'), 'This link has no key');
    // Only the fragment changes: the page notices and reads the link again.
    await page.goto(`${server.url}/m/some-room#tooShort`);
    await page.waitForFunction(
      () => document.querySelector('#notice-title')?.textContent === 'This link’s key is damaged',
      { timeout: 10_000 },
    );
    await page.close();
  });

  await t.test('a browser without RTCRtpScriptTransform', async () => {
    const page = await browser.newPage();
    await page.evaluateOnNewDocument(() => {
      delete window.RTCRtpScriptTransform;
    });
    const link = await newMeetingLink(page, server.url);
    assert.match(link, /\/m\/[A-Za-z0-9_-]{10}#/);
    await visible(page, '#notice');
    assert.equal(await text(page, '#notice-title'), 'This browser cannot join');
    assert.match(await text(page, '#notice-text'), /RTCRtpScriptTransform/);
    await page.close();
  });

  await t.test('camera and microphone blocked: explained, and joining to watch still works', async () => {
    const secret = Buffer.alloc(32, 7).toString('base64url');
    const link = `${server.url}/m/blocked#${secret}`;
    const host = await (await browser.createBrowserContext()).newPage();
    await joinMeeting(host, link, 'Host');
    const hostId = (await stats(host)).ownId;

    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    // The fake-UI flag grants every request, so refuse the way a person's "Block" does.
    await page.evaluateOnNewDocument(() => {
      navigator.mediaDevices.getUserMedia = () =>
        Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
    });
    await page.goto(link);
    await visible(page, '#prejoin-error');
    assert.match(await text(page, '#prejoin-error'), /may not use your camera and microphone/);
    await visible(page, '#join-without-devices');
    await page.type('#display-name', 'Watcher');
    await page.click('#join-without-devices');
    await waitFor(async () => inbound(await rtcStats(page), hostId, 'video', 'framesDecoded') > 10, {
      timeoutMs: 20_000,
      message: 'the watcher to decode the host’s video',
    });
    assert.equal(await page.$eval('#toggle-mic', (b) => b.disabled), true);
    await context.close();
    await host.browserContext().close();
  });

  await t.test('server gone, then back: the page reconnects as a new participant', async () => {
    const page = await (await browser.createBrowserContext()).newPage();
    const link = await newMeetingLink(page, server.url);
    await joinMeeting(page, link, 'Rita');
    const firstId = (await stats(page)).ownId;
    await server.stop();
    await page.waitForFunction(
      () => /Reconnecting/.test(document.querySelector('#banner')?.textContent ?? ''),
      { timeout: 15_000 },
    );
    const banner = await text(page, '#banner');
    assert.match(banner, /(lost|reach)/, banner);
    const again = await startServer(t, { name: 'page-states-restarted', port: server.port });
    assert.equal(again.port, server.port);
    await waitFor(async () => (await stats(page))?.connection === 'joined', {
      timeoutMs: 30_000,
      message: 'the page to rejoin',
    });
    const st = await stats(page);
    assert.ok(st.ownId != null);
    console.log(`rejoined as ${st.ownId} (was ${firstId})`);
    assert.equal(await page.$eval('#banner', (el) => el.hidden), true);
  });
});
