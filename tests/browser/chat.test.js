// Encrypted chat and hand raise between Chromium and Firefox: a message typed
// in one browser appears decrypted in the other; neither the server's log nor
// the WebSocket bytes it relays contain the plaintext; a participant with a
// wrong meeting secret sees "cannot decrypt" for each message (never nothing);
// a joiner is told that earlier messages are not available; the unread count
// shows while the panel is closed; a raised hand shows on the tile and in the
// list, also for someone who joins after it was raised.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';

import { launchChromium, launchFirefox } from './lib/browsers.js';
import { joinMeeting, newMeetingLink, screenshot, stats, waitFor } from './lib/meeting.js';
import { startServer } from './lib/server.js';

/** Records the text of every WebSocket frame a Chromium page sends and receives. */
async function recordWebSocket(page) {
  const frames = [];
  const cdp = await page.createCDPSession();
  await cdp.send('Network.enable');
  cdp.on('Network.webSocketFrameSent', (e) => frames.push(e.response.payloadData));
  cdp.on('Network.webSocketFrameReceived', (e) => frames.push(e.response.payloadData));
  return frames;
}

/** The chat lines `page` shows: [{from, body, error}] (error: the engine's code for undecryptable ones). */
function chatLines(page) {
  return page.$$eval('#chat-messages .chat-message', (items) =>
    items.map((li) => ({
      from: li.querySelector('.chat-from')?.textContent,
      body: li.querySelector('.chat-body')?.textContent,
      error: li.dataset.error ?? null,
    })),
  );
}

async function say(page, text) {
  if (await page.$eval('#chat', (el) => el.hidden)) await page.click('#toggle-chat');
  await page.type('#chat-input', text);
  await page.click('#chat-form button[type="submit"]');
}

const idOf = async (page) => (await stats(page)).ownId;

/** Whether `page` shows a raised hand for participant `id` on the tile and in the list. */
const handShown = (page, id) =>
  page.evaluate(
    (pid) =>
      ['.tile', '#participant-list li'].every((sel) => {
        const icon = document.querySelector(`${sel}[data-participant="${pid}"] .hand-icon`);
        return icon !== null && !icon.hidden;
      }),
    String(id),
  );

test('encrypted chat and hand raise across Chromium and Firefox', { timeout: 180_000 }, async (t) => {
  const [chromium, firefox] = await Promise.all([launchChromium(t), launchFirefox(t)]);
  const server = await startServer(t, { name: 'chat' });
  const ann = await (await chromium.createBrowserContext()).newPage();
  const fay = await firefox.newPage();
  const wes = await (await chromium.createBrowserContext()).newPage(); // wrong secret
  const cleo = await (await chromium.createBrowserContext()).newPage(); // joins later
  for (const page of [ann, fay, wes, cleo]) page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  const annFrames = await recordWebSocket(ann);
  const cleoFrames = await recordWebSocket(cleo);

  const link = await newMeetingLink(ann, server.url);
  const wrongLink = `${link.split('#')[0]}#${randomBytes(32).toString('base64url')}`;
  await joinMeeting(ann, link, 'Ann');
  await joinMeeting(fay, link, 'Fay');
  await joinMeeting(wes, wrongLink, 'Wes');
  const fayId = (await stats(fay)).ownId;
  await waitFor(async () => (await stats(ann)).epoch !== null && (await stats(fay)).epoch === (await stats(ann)).epoch, {
    timeoutMs: 20_000,
    message: 'Ann and Fay to share an epoch',
  });

  const fromAnn = `Quarterly numbers ${randomBytes(6).toString('hex')} — keep them in the room`;
  const fromFay = `Agreed, ${randomBytes(6).toString('hex')} stays here`;
  await say(ann, fromAnn);
  await waitFor(async () => (await chatLines(fay)).some((l) => l.body === fromAnn && l.from === 'Ann'), {
    message: 'Firefox to show Chromium’s message decrypted',
  });
  // The panel is closed at Fay: the unread count says so, and opening it clears it.
  assert.equal(await fay.$eval('#chat-unread', (b) => (b.hidden ? '' : b.textContent)), '1');
  assert.equal((await stats(fay)).chat.unread, 1);
  await say(fay, fromFay);
  assert.equal(await fay.$eval('#chat-unread', (b) => b.hidden), true);
  await waitFor(async () => (await chatLines(ann)).some((l) => l.body === fromFay && l.from === 'Fay'), {
    message: 'Chromium to show Firefox’s message decrypted',
  });
  assert.ok((await chatLines(ann)).some((l) => l.body === fromAnn && l.from === 'You'), 'own message listed');

  // The wrong secret: both messages are listed as undecryptable, none silently dropped.
  await waitFor(async () => (await chatLines(wes)).filter((l) => l.error !== null).length >= 2, {
    timeoutMs: 20_000,
    message: 'the wrong-secret participant to list both messages as undecryptable',
  });
  const atWes = await chatLines(wes);
  console.log('wrong secret sees', JSON.stringify(atWes));
  assert.ok(atWes.every((l) => l.error !== null && /^cannot decrypt/.test(l.body)));
  assert.ok(!atWes.some((l) => l.body.includes(fromAnn) || l.body.includes(fromFay)));
  await screenshot(wes, 'chat-wrong-secret');

  // A raised hand shows at the others, also at someone who joins after it went up.
  await ann.click('#raise-hand');
  await waitFor(async () => handShown(fay, await idOf(ann)), { message: 'Fay to see Ann’s hand' });
  await joinMeeting(cleo, link, 'Cleo');
  await waitFor(async () => handShown(cleo, await idOf(ann)), {
    timeoutMs: 20_000,
    message: 'the late joiner to see Ann’s hand',
  }).catch(async (error) => {
    const st = await stats(cleo);
    throw new Error(`${error.message}: Ann is ${await idOf(ann)} (rejoins ${(await stats(ann)).rejoins}); Cleo sees ${JSON.stringify(st.remote)}, chat ${JSON.stringify(await chatLines(cleo))}, epoch ${st.epoch}`);
  });
  const note = await cleo.$eval('#chat-messages .chat-note', (n) => n.textContent);
  assert.match(note, /only those sent after you joined/);
  assert.equal((await chatLines(cleo)).filter((l) => l.body === fromAnn).length, 0, 'no history for joiners');
  // Cleo hears what is said from now on.
  const later = `Welcome ${randomBytes(4).toString('hex')}`;
  await say(fay, later);
  await waitFor(async () => (await chatLines(cleo)).some((l) => l.body === later && l.from === 'Fay'), {
    message: 'the joiner to read new messages',
  });
  await ann.click('#raise-hand');
  await waitFor(async () => !(await handShown(fay, await idOf(ann))), { message: 'Ann’s hand to go down at Fay' });
  await screenshot(fay, 'chat-firefox');
  await screenshot(ann, 'chat-chromium');

  // Neither the relayed WebSocket bytes nor the server's log carry a plaintext.
  const relayed = [...annFrames, ...cleoFrames];
  assert.ok(relayed.some((f) => f.includes('"type":"chat"')), 'the recorder saw chat frames');
  for (const text of [fromAnn, fromFay, later]) {
    assert.ok(!relayed.some((f) => f.includes(text)), 'plaintext in a WebSocket frame');
    assert.ok(!server.logs.join('').includes(text), 'plaintext in the server log');
  }
  assert.ok(!relayed.some((f) => f.includes('"t":"text"')), 'chat JSON in a WebSocket frame');
  console.log(`Fay is ${fayId}; chat frames seen: ${relayed.filter((f) => f.includes('"type":"chat"')).length}`);
});
