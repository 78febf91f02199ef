// Issue 8, item 6: the meeting secret leaves the address bar and this history
// entry as soon as the page has read it; a reload of the tab rejoins the same
// meeting (the tab's sessionStorage kept it); "Copy invite link" still gives
// the whole link; leaving forgets it. Chromium and Firefox.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launchChromium, launchFirefox } from './lib/browsers.js';
import { joinMeeting, newMeetingLink, stats, waitFor } from './lib/meeting.js';
import { startServer } from './lib/server.js';

/** Runs before the page: "Copy invite link" writes here instead of the system clipboard. */
function captureClipboard() {
  window.__copied = [];
  Object.defineProperty(navigator, 'clipboard', {
    configurable: true,
    value: { writeText: async (text) => window.__copied.push(text) },
  });
}

for (const [name, launch] of [
  ['Chromium', launchChromium],
  ['Firefox', launchFirefox],
]) {
  test(`the secret leaves the address bar; reload rejoins; leave forgets (${name})`, { timeout: 120_000 }, async (t) => {
    const [host, browser] = await Promise.all([launchChromium(t), launch(t)]);
    const server = await startServer(t, { name: `secret-${name.toLowerCase()}` });
    const ann = await host.newPage();
    const link = await newMeetingLink(ann, server.url);
    const secret = link.split('#')[1];
    await joinMeeting(ann, link, 'Ann');

    const page = await browser.newPage();
    await page.evaluateOnNewDocument(captureClipboard);
    await page.goto(link);
    await page.waitForSelector('#prejoin', { visible: true });
    const where = await page.evaluate(() => ({ href: location.href, hash: location.hash, length: history.length }));
    assert.equal(where.hash, '', 'no fragment in the address bar');
    assert.ok(!where.href.includes(secret), 'the secret is not in the address');
    assert.ok(!page.url().includes(secret), 'nor in what the browser reports as the page address');
    await joinMeeting(page, link.split('#')[0], 'Bea');
    await waitFor(async () => (await stats(page)).safetyNumber === (await stats(ann)).safetyNumber && (await stats(page)).epoch !== null, {
      message: 'Bea to share keys with Ann',
    });

    // "Copy invite link" gives the whole link, secret included.
    await page.click('#copy-link');
    const copied = await waitFor(() => page.evaluate(() => window.__copied[0] ?? null), { message: 'the copied link' });
    assert.equal(copied, link);

    // A reload finds the secret in the tab and joins the same meeting again.
    const firstId = (await stats(page)).ownId;
    await page.reload();
    await page.waitForSelector('#prejoin', { visible: true });
    await joinMeeting(page, link.split('#')[0], 'Bea');
    await waitFor(
      async () => {
        const [s, a] = [await stats(page), await stats(ann)];
        return s.ownId !== firstId && s.epoch !== null && s.safetyNumber === a.safetyNumber;
      },
      { timeoutMs: 20_000, message: 'the reloaded tab to rejoin with the same secret' },
    );
    assert.ok(!page.url().includes(secret));

    // Leaving forgets it: a reload asks for the link again.
    await page.click('#leave');
    await page.waitForSelector('#notice', { visible: true });
    const kept = await page.evaluate(() => JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage }));
    assert.ok(!kept.includes(secret), 'the secret is forgotten on leave');
    await page.reload();
    await page.waitForSelector('#notice', { visible: true });
    assert.equal(await page.$eval('#notice-title', (el) => el.textContent), 'This link has no key');
  });
}
