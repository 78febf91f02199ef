// The forced late-key path: a joiner's key messages are held back (the test
// delays every incoming `e2ee` message in the joiner's page by 3 s), so the
// SFU's frames reach it before their key. It drops them, asks for a keyframe
// once the key arrives, and the picture resumes within 1 s of the key's
// arrival. Chromium and Firefox joiners.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launchChromium, launchFirefox } from './lib/browsers.js';
import { bench, joinMeeting, newMeetingLink, screenshot, stats, waitFor } from './lib/meeting.js';
import { startServer } from './lib/server.js';

const KEY_DELAY_MS = 3000;

/**
 * Runs before the page's scripts: holds back every `e2ee` message the server
 * sends for `delay` ms, notes when the first EpochKey (clear bytes 02 01: v2, type EpochKey) is
 * handed to the page, and notes when the first remote video frame shows.
 */
function holdBackKeys(delay) {
  window.__late = { keyAt: null, firstFrameAt: null, heldBack: 0 };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    set onmessage(handler) {
      super.onmessage = (event) => {
        let msg = null;
        try {
          msg = JSON.parse(event.data);
        } catch {
          // not ours to judge
        }
        if (msg?.type !== 'e2ee') {
          handler(event);
          return;
        }
        window.__late.heldBack += 1;
        setTimeout(() => {
          const b64 = msg.payload.replaceAll('-', '+').replaceAll('_', '/');
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          if (window.__late.keyAt === null && bytes[0] === 2 && bytes[1] === 1) window.__late.keyAt = performance.now();
          handler(event);
        }, delay);
      };
    }
  };
  // requestVideoFrameCallback fires when a decoded frame is presented (both browsers).
  const watched = new WeakSet();
  setInterval(() => {
    for (const video of document.querySelectorAll('.tile:not(.self) video')) {
      if (watched.has(video)) continue;
      watched.add(video);
      video.requestVideoFrameCallback((now) => {
        window.__late.firstFrameAt ??= now;
      });
    }
  }, 10);
}

for (const [name, launch] of [
  ['Chromium', launchChromium],
  ['Firefox', launchFirefox],
]) {
  test(`late key (${name} joiner): frames before the key, picture within 1 s of it`, { timeout: 120_000 }, async (t) => {
    const [host, joinerBrowser] = await Promise.all([launchChromium(t), launch(t)]);
    const server = await startServer(t, { name: `late-key-${name.toLowerCase()}` });
    const ann = await host.newPage();
    const joiner = await joinerBrowser.newPage();
    joiner.on('pageerror', (e) => console.log(`page error: ${e.message}`));
    await joiner.evaluateOnNewDocument(holdBackKeys, KEY_DELAY_MS);
    const link = await newMeetingLink(ann, server.url);
    await joinMeeting(ann, link, 'Ann');
    await joinMeeting(joiner, link, 'Late');
    const annId = (await stats(ann)).ownId;

    let seen = null;
    const late = await waitFor(
      async () => {
        seen = await joiner.evaluate(() => window.__late ?? null);
        return seen?.keyAt != null && seen?.firstFrameAt != null ? seen : null;
      },
      { timeoutMs: 30_000, message: 'the key and then a picture' },
    ).catch(async (error) => {
      const st = await stats(joiner);
      throw new Error(`${error.message}: ${JSON.stringify(seen)} ${JSON.stringify(st?.participants)} ${JSON.stringify(st?.keyframes)} epoch ${st?.epoch}`);
    });
    const st = await stats(joiner);
    const dropsBeforeKey = st.participants[String(annId)]?.droppedByReason?.no_key ?? 0;
    const resumeMs = Math.round(late.firstFrameAt - late.keyAt);
    console.log(`${name}: ${late.heldBack} key messages held back ${KEY_DELAY_MS} ms; ${dropsBeforeKey} frames dropped for want of a key;`,
      `first frame ${resumeMs} ms after the key; keyframes ${JSON.stringify(st.keyframes)}`);
    bench(`late_key_resume_ms_${name.toLowerCase()}`, resumeMs);
    assert.ok(dropsBeforeKey > 0, 'frames arrived before their key (the path was forced)');
    assert.ok(late.firstFrameAt > late.keyAt, 'no picture before the key');
    assert.ok(resumeMs <= 1000, `the picture resumed ${resumeMs} ms after the key arrived`);
    if (st.keyframes.canRequest) assert.ok(st.keyframes.requested > 0, 'the receiver asked for a keyframe');
    await waitFor(async () => (await stats(joiner)).participants[String(annId)]?.state === 'decrypting', {
      message: 'the joiner to keep decrypting',
    });
    await screenshot(joiner, `late-key-${name.toLowerCase()}`);
  });
}
