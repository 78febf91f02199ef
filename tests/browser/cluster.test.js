// Several nodes (`sealed serve --redis`): two Chromium participants open the SAME
// meeting link (same room and #secret) but each on a different node's origin.
// The node that does not host the room proxies its participant's WebSocket to the
// one that does, whose ICE candidates carry media straight to it: both decode
// each other's video and audio, one node hosts the room.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';

import { launchChromium } from './lib/browsers.js';
import { decrypted, echoConsole, inbound, joinMeeting, newMeetingLink, rtcStats, screenshot, sleep, stats, waitFor } from './lib/meeting.js';
import { ARTIFACTS, fetchText, startServer } from './lib/server.js';

/** Debian's redis-server: on PATH, else /usr/bin/redis-server. */
function redisBinary() {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'redis-server'))) return join(dir, 'redis-server');
  }
  if (existsSync('/usr/bin/redis-server')) return '/usr/bin/redis-server';
  throw new Error('redis-server not found (PATH, /usr/bin): `cargo xtask test` installs the Debian package `redis-server`');
}

/** A loopback TCP port nobody listens on right now. */
function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** One raw RESP PING; resolves true on +PONG. */
function ping(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let reply = '';
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('*1\r\n$4\r\nPING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

/** Starts a throwaway redis-server (no persistence) and registers its end with `t.after`. */
async function startRedis(t) {
  const port = await freeTcpPort();
  const logs = [];
  const child = spawn(redisBinary(), ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (c) => logs.push(c.toString()));
  child.stderr.on('data', (c) => logs.push(c.toString()));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(join(ARTIFACTS, 'cluster-redis.log'), logs.join(''));
  });
  const deadline = Date.now() + 10_000;
  while (!(await ping(port))) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}:\n${logs.join('')}`);
    if (Date.now() > deadline) throw new Error(`redis-server did not answer PING within 10 s:\n${logs.join('')}`);
    await sleep(50);
  }
  return { url: `redis://127.0.0.1:${port}`, port };
}

/** The first sample of a gauge on a node's /metrics, labelled (`name{node="a"} 1`) or not. */
async function gauge(node, name) {
  const { text } = await fetchText(`${node.url}/metrics`);
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').pop()) : null;
}

test('two nodes, one meeting link: participants on different nodes decode each other', { timeout: 150_000 }, async (t) => {
  const redis = await startRedis(t);
  const clusterArgs = (id) => ['--redis', redis.url, '--trusted-proxies', '127.0.0.1', '--node-id', id];
  // startServer gives each node its own random --udp-port; the two must differ.
  const a = await startServer(t, { name: 'cluster-node-a', args: clusterArgs('node-a') });
  let b = await startServer(t, { name: 'cluster-node-b', args: clusterArgs('node-b') }).catch(() => null);
  if (!b || b.udpPorts[0] === a.udpPorts[0]) {
    await b?.stop();
    b = await startServer(t, { name: 'cluster-node-b2', args: clusterArgs('node-b') });
  }
  assert.notEqual(a.udpPorts[0], b.udpPorts[0], 'the nodes need distinct media ports');
  await waitFor(async () => (await gauge(a, 'sealed_cluster_nodes')) === 2 && (await gauge(b, 'sealed_cluster_nodes')) === 2, {
    timeoutMs: 15_000,
    message: 'both nodes to see two live nodes (sealed_cluster_nodes)',
  });

  const browser = await launchChromium(t);
  const alice = await (await browser.createBrowserContext()).newPage();
  const bob = await (await browser.createBrowserContext()).newPage();
  for (const [page, label] of [
    [alice, 'alice@node-a'],
    [bob, 'bob@node-b'],
  ]) {
    await page.setViewport({ width: 1280, height: 720 });
    echoConsole(page, label);
  }

  // The same link (room and #secret), once on each node's origin.
  const linkA = await newMeetingLink(alice, a.url);
  const parsed = new URL(linkA);
  const linkB = `${b.url}${parsed.pathname}${parsed.search}${parsed.hash}`;
  assert.notEqual(new URL(linkB).origin, parsed.origin);
  console.log(`meeting link on node A ${parsed.origin}${parsed.pathname}, on node B ${new URL(linkB).origin}${parsed.pathname}`);
  await joinMeeting(alice, linkA, 'Alice');
  await joinMeeting(bob, linkB, 'Bob');
  const aliceId = (await stats(alice)).ownId;
  const bobId = (await stats(bob)).ownId;
  assert.notEqual(aliceId, bobId);

  const describe = async () =>
    JSON.stringify({
      alice: await rtcStats(alice).catch((e) => e.message),
      bob: await rtcStats(bob).catch((e) => e.message),
      rooms: [await gauge(a, 'sealed_rooms'), await gauge(b, 'sealed_rooms')],
      logsA: a.logs.join('').split('\n').slice(-15),
      logsB: b.logs.join('').split('\n').slice(-15),
    });
  try {
    await waitFor(
      async () =>
        inbound(await rtcStats(alice), bobId, 'video', 'framesDecoded') > 0 &&
        inbound(await rtcStats(bob), aliceId, 'video', 'framesDecoded') > 0,
      { timeoutMs: 30_000, message: 'both to decode the other’s video' },
    );
  } catch (error) {
    throw new Error(`${error.message}\n${await describe()}`);
  }

  const rtcBefore = [await rtcStats(alice), await rtcStats(bob)];
  const e2eeBefore = [await stats(alice), await stats(bob)];
  await sleep(3000);
  const rtcAfter = [await rtcStats(alice), await rtcStats(bob)];
  const e2eeAfter = [await stats(alice), await stats(bob)];
  for (const [who, i, from] of [
    ['Alice (node A)', 0, bobId],
    ['Bob (node B)', 1, aliceId],
  ]) {
    const decoded =
      inbound(rtcAfter[i], from, 'video', 'framesDecoded') - inbound(rtcBefore[i], from, 'video', 'framesDecoded');
    const audio = decrypted(e2eeAfter[i], from, 'audio') - decrypted(e2eeBefore[i], from, 'audio');
    console.log(`${who}: decoded ${decoded} video frames, decrypted ${audio} audio frames in 3 s`);
    assert.ok(decoded >= 20, `${who} decoded only ${decoded} video frames in 3 s`);
    assert.ok(audio >= 50, `${who} decrypted only ${audio} audio frames in 3 s`);
    assert.equal(e2eeAfter[i].participants[String(from)].state, 'decrypting');
  }
  assert.equal(e2eeAfter[0].safetyNumber, e2eeAfter[1].safetyNumber, 'both show the same safety number');

  const rooms = [await gauge(a, 'sealed_rooms'), await gauge(b, 'sealed_rooms')];
  console.log(`sealed_rooms: node A ${rooms[0]}, node B ${rooms[1]}`);
  assert.deepEqual([...rooms].sort(), [0, 1], `exactly one node hosts the room (sealed_rooms ${JSON.stringify(rooms)})`);
  // Media goes straight to the hosting node; the other one only proxies signaling.
  const forwarded = [await gauge(a, 'sealed_sfu_forwarded_packets_total'), await gauge(b, 'sealed_sfu_forwarded_packets_total')];
  console.log(`sealed_sfu_forwarded_packets_total: node A ${forwarded[0]}, node B ${forwarded[1]}`);
  const host = rooms.indexOf(1);
  assert.ok(forwarded[host] > 0, `the hosting node forwarded only ${forwarded[host]} packets`);
  assert.equal(forwarded[1 - host] ?? 0, 0, 'the node that does not host the room forwarded media');
  await screenshot(alice, 'cluster-alice-node-a');
  await screenshot(bob, 'cluster-bob-node-b');
});
