// Media through the embedded TURN server: with the test switch that makes every
// client use relayed candidates only, Chromium and Firefox decode each other, the
// page names the relayed path, and the TURN counters on /metrics show the bytes.
// The same meeting without the switch, in the same run, is the direct baseline for
// the join → first frame figures.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launchChromium, launchFirefox } from './lib/browsers.js';
import { bench, screenshot } from './lib/meeting.js';
import { meetAcrossBrowsers } from './lib/pair.js';
import { fetchText, startServer } from './lib/server.js';

const TURN_ON = ['--turn', 'on', '--turn-udp-port', '0', '--turn-tcp-port', '0'];

function relayedBytes(metrics, direction) {
  const line = metrics.split('\n').find((l) => l.startsWith(`sealed_turn_relayed_bytes_total{direction="${direction}"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

for (const mode of ['direct', 'relay']) {
  test(`Chromium and Firefox meet ${mode === 'relay' ? 'through the TURN relay' : 'directly (baseline)'}`, { timeout: 150_000 }, async (t) => {
    const [chromium, firefox] = await Promise.all([launchChromium(t), launchFirefox(t)]);
    const args = mode === 'relay' ? [...TURN_ON, '--test-force-relay'] : TURN_ON;
    const server = await startServer(t, { name: `relay-${mode}`, args });
    const { c, f, rtc, timings } = await meetAcrossBrowsers(chromium, firefox, server.url);
    bench(`join_to_first_frame_ms_${mode}_chromium`, timings.chromium);
    bench(`join_to_first_frame_ms_${mode}_firefox`, timings.firefox);

    const metrics = (await fetchText(`${server.url}/metrics`)).text;
    const toSfu = relayedBytes(metrics, 'to_sfu');
    const fromSfu = relayedBytes(metrics, 'from_sfu');
    console.log(`${mode}: TURN relayed ${toSfu} bytes to the SFU, ${fromSfu} from it`);
    for (const [who, stats] of [['Chromium', rtc[0]], ['Firefox', rtc[1]]]) {
      const kinds = [stats.path.publish?.kind, stats.path.subscribe?.kind];
      if (mode === 'relay') {
        assert.ok(kinds.every((k) => k?.startsWith('relay-')), `${who} path ${JSON.stringify(stats.path)}`);
      } else {
        assert.ok(kinds.every((k) => k === 'direct-udp'), `${who} path ${JSON.stringify(stats.path)}`);
      }
    }
    const shown = await c.$eval('#media-path', (el) => el.textContent);
    if (mode === 'relay') {
      assert.match(shown, /Relayed by the server/);
      // Two participants, each sending and receiving video and audio for seconds.
      assert.ok(toSfu > 200_000 && fromSfu > 200_000, `relayed ${toSfu} / ${fromSfu} bytes`);
      await screenshot(c, 'relay-chromium');
      await screenshot(f, 'relay-firefox');
    } else {
      assert.equal(shown, 'Direct (UDP)');
      // The browsers send directly: only connectivity checks reach the relay.
      assert.ok(toSfu < 50_000, `direct uplink media went through the relay: ${toSfu} bytes`);
      // Printed, not asserted: the older engine kept the first pair a browser
      // nominated and could leave its downlink on a relay pair; the single-port
      // engine measured 272 bytes here (6 December), but one run is not yet a
      // guarantee worth failing CI on.
      bench('direct_mode_downlink_bytes_through_relay', fromSfu);
    }
  });
}
