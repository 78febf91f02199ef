// A network that lets no UDP through to the server, and no TURN to fall back on:
// Chromium and Firefox reach the SFU over ICE-TCP (RFC 6544: the SFU's passive TCP
// candidate on the same port number as its UDP port), decode each other's video
// both ways, and the page names the path "Direct (TCP)".
//
// The test runs in a network namespace of its own (lib/netns.js), where an
// nftables input rule drops every UDP datagram to the media port.

import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { launchChromium, launchFirefox } from './lib/browsers.js';
import { dropOnInput, insideNamespace, runInNamespace } from './lib/netns.js';
import { bench, screenshot } from './lib/meeting.js';
import { meetAcrossBrowsers } from './lib/pair.js';
import { startServer } from './lib/server.js';

if (!insideNamespace) {
  test('UDP to the SFU blocked: Chromium and Firefox meet over ICE-TCP', { timeout: 200_000 }, (t) => {
    runInNamespace(t, fileURLToPath(import.meta.url), 190_000);
  });
} else {
  test('inside the namespace: no UDP to the media port, media over ICE-TCP', { timeout: 180_000 }, async (t) => {
    const [chromium, firefox] = await Promise.all([launchChromium(t), launchFirefox(t)]);
    const server = await startServer(t, { name: 'ice-tcp', args: ['--turn', 'off'] });
    const [port] = server.udpPorts;
    dropOnInput(t, 'udp', 'dport', String(port));

    const { c, f, rtc, timings } = await meetAcrossBrowsers(chromium, firefox, server.url);
    bench('join_to_first_frame_ms_ice_tcp_chromium', timings.chromium);
    bench('join_to_first_frame_ms_ice_tcp_firefox', timings.firefox);
    for (const [who, stats] of [['Chromium', rtc[0]], ['Firefox', rtc[1]]]) {
      const kinds = [stats.path.publish?.kind, stats.path.subscribe?.kind];
      assert.ok(kinds.every((k) => k === 'direct-tcp'), `${who} path ${JSON.stringify(stats.path)}`);
    }
    assert.equal(await c.$eval('#media-path', (el) => el.textContent), 'Direct (TCP)');
    await screenshot(c, 'ice-tcp-chromium');
    await screenshot(f, 'ice-tcp-firefox');
  });
}
