// A lossy path from the SFU to the browsers: about one datagram in twenty from the
// media port is dropped. The browsers ask again (NACK) and the SFU answers from its own
// send history — forwarded packets bypass the WebRTC stack's retransmission buffer —
// on the RTX stream (RFC 4588) each browser took in its answer. Chromium and Firefox
// keep decoding each other, Chromium counts the NACKs it sent and the retransmissions it
// received, and the server counts the retransmissions it sent. (Firefox's NACK count is
// logged, not asserted: with the loss from the first packet it sent none, recovering with
// keyframe requests; with the loss starting mid-call it sends them too.)
//
// The test runs in a network namespace of its own (lib/netns.js), where, once both
// browsers decode each other, an nftables input rule drops a random 5 % of the UDP
// datagrams the media port sends.

import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { launchChromium, launchFirefox } from './lib/browsers.js';
import { inbound, rtcStats, sleep } from './lib/meeting.js';
import { dropOnInput, insideNamespace, runInNamespace } from './lib/netns.js';
import { meetAcrossBrowsers } from './lib/pair.js';
import { fetchText, startServer } from './lib/server.js';

/** A counter from the server's /metrics. */
async function metric(url, name) {
  const { text } = await fetchText(`${url}/metrics`);
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? NaN);
}

if (!insideNamespace) {
  test('5 % loss towards the browsers: NACKs answered over RTX, video keeps decoding', { timeout: 200_000 }, (t) => {
    runInNamespace(t, fileURLToPath(import.meta.url), 190_000);
  });
} else {
  test('inside the namespace: 5 % of the media port’s datagrams dropped', { timeout: 180_000 }, async (t) => {
    const [chromium, firefox] = await Promise.all([launchChromium(t), launchFirefox(t)]);
    const server = await startServer(t, { name: 'packet-loss', args: ['--turn', 'off'] });
    const [port] = server.udpPorts;

    // The loss starts once the call is up: what is tested is recovery during a call. (With
    // this loss from the first packet each connection still reaches Connected in well under
    // a second, but in a few runs a subscribe connection was not up within the engine's
    // 15 s connect deadline: a separate problem, open in the issue notes.)
    const { c, f, cId, fId } = await meetAcrossBrowsers(chromium, firefox, server.url);
    dropOnInput(t, 'udp', 'sport', String(port), 'numgen', 'random', 'mod', '100', '<', '5');
    await sleep(1000);
    const sentBefore = await metric(server.url, 'sealed_sfu_retransmitted_packets_total');
    const before = [await rtcStats(c), await rtcStats(f)];
    await sleep(8000);
    const after = [await rtcStats(c), await rtcStats(f)];
    const sent = (await metric(server.url, 'sealed_sfu_retransmitted_packets_total')) - sentBefore;

    const delta = (i, from, field) => inbound(after[i], from, 'video', field) - inbound(before[i], from, 'video', field);
    const atChromium = { decoded: delta(0, fId, 'framesDecoded'), nacks: delta(0, fId, 'nackCount'), rtx: delta(0, fId, 'retransmittedPacketsReceived') };
    const atFirefox = { decoded: delta(1, cId, 'framesDecoded'), nacks: delta(1, cId, 'nackCount') };
    console.log('in 8 s: server retransmitted', sent, 'Chromium', JSON.stringify(atChromium), 'Firefox', JSON.stringify(atFirefox));

    assert.ok(atChromium.decoded >= 100, `Chromium decoded only ${atChromium.decoded} frames in 8 s`);
    assert.ok(atFirefox.decoded >= 100, `Firefox decoded only ${atFirefox.decoded} frames in 8 s`);
    assert.ok(atChromium.nacks > 0, 'Chromium asked for lost packets');
    assert.ok(sent > 0, 'the server sent packets again');
    assert.ok(atChromium.rtx > 0, 'Chromium received retransmissions on its RTX stream');
    assert.ok(atChromium.rtx <= sent, 'every retransmission Chromium counts came from the server');
  });
}
