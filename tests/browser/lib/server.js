// Starts the real `sealed` server for a test and stops it afterwards.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import dgram from 'node:dgram';
import https from 'node:https';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests/browser/lib → ../../..). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
/** Where tests leave screenshots and logs (gitignored). */
export const ARTIFACTS = join(REPO_ROOT, 'tests/browser/artifacts');

/** The server binary: `SEALED_BIN`, or the debug build that `cargo xtask test` makes. */
export function sealedBinary() {
  return process.env.SEALED_BIN ?? join(REPO_ROOT, 'target/debug/sealed');
}

/** A TCP port nobody listens on right now. */
function freeTcpPort() {
  return new Promise((resolvePort, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

/** Whether `port` can be bound for UDP on loopback right now. */
function udpFree(port) {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', () => resolve(false));
    socket.bind(port, '127.0.0.1', () => socket.close(() => resolve(true)));
  });
}

/** Whether `port` can be listened on for TCP on loopback right now. */
function tcpFree(port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A media port free for UDP and for TCP (ICE-TCP listens on the same number): random,
 * below Linux's ephemeral range (32768–60999), where a browser's or a test's outgoing
 * connection may hold the number at any moment.
 */
async function mediaPort() {
  for (let i = 0; i < 100; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if ((await udpFree(port)) && (await tcpFree(port))) return port;
  }
  throw new Error('no loopback port free for both UDP and TCP in 20000–32000 after 100 tries');
}

/** GET over HTTP, or over HTTPS accepting the server's self-signed certificate. */
export function fetchText(url) {
  if (!url.startsWith('https:')) return fetch(url).then(async (r) => ({ status: r.status, text: await r.text() }));
  return new Promise((resolve, reject) => {
    const request = https.get(url, { rejectUnauthorized: false }, (response) => {
      let text = '';
      response.on('data', (chunk) => {
        text += chunk;
      });
      response.on('end', () => resolve({ status: response.statusCode, text }));
    });
    request.on('error', reject);
  });
}

async function waitHealthy(url, child, logs, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`sealed exited with ${child.exitCode} before it was healthy:\n${logs.join('')}`);
    }
    try {
      const response = await fetchText(`${url}/healthz`);
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sealed did not answer /healthz within ${timeoutMs} ms:\n${logs.join('')}`);
}

/**
 * Starts `sealed serve` on a free port and registers its shutdown with `t.after`.
 * `args` are extra flags; `tls: true` serves HTTPS with a self-signed certificate.
 * Returns `{ url, port, udpPorts, logs, spki, stop }` (`stop()` may be called early;
 * `spki` is the certificate's hash for Chromium's --ignore-certificate-errors-spki-list).
 */
export async function startServer(t, { name = 'server', port: fixedPort = null, args = [], tls = false } = {}) {
  const binary = sealedBinary();
  if (!existsSync(binary)) {
    throw new Error(`${binary} does not exist: build it first (cargo build -p signaling --bin sealed) or set SEALED_BIN`);
  }
  if (!existsSync(join(REPO_ROOT, 'web/pkg/client_wasm.js'))) {
    throw new Error('web/pkg/client_wasm.js does not exist: build it first (cargo xtask build-web)');
  }
  const port = fixedPort ?? (await freeTcpPort());
  const udp = await mediaPort();
  const logs = [];
  const child = spawn(
    binary,
    // --web-dir: always this checkout's web/ (what `cargo xtask build-web` just built),
    // even when the binary carries an embedded copy (`cargo xtask dist` builds one
    // into target/*/sealed).
    [
      'serve',
      '--listen',
      `127.0.0.1:${port}`,
      '--udp-port',
      String(udp),
      '--web-dir',
      join(REPO_ROOT, 'web'),
      ...(tls ? ['--tls-self-signed'] : []),
      ...args,
    ],
    {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', NO_COLOR: '1' },
    },
  );
  child.stdout.on('data', (chunk) => logs.push(chunk.toString()));
  child.stderr.on('data', (chunk) => logs.push(chunk.toString()));
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(join(ARTIFACTS, `${name}.log`), logs.join(''));
  };
  t.after(stop);
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  await waitHealthy(url, child, logs, 20000);
  const spki = logs.join('').match(/--ignore-certificate-errors-spki-list=(\S+)/)?.[1] ?? null;
  return { url, port, udpPorts: [udp, udp], logs, spki, stop };
}
