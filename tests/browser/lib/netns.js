// Tests that cut the network run in a network namespace of their own (`unshare -n`,
// loopback only), where an nftables input rule can drop traffic without touching
// anything else on the machine. They need root, `unshare`, `nft` and `ip` (xtask
// installs nftables); without them they are skipped and say why.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';

/** Why namespace tests cannot run here, or null when they can. */
export function missingTools() {
  if (process.getuid?.() !== 0) return 'not root';
  for (const tool of ['unshare', 'nft', 'ip']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `no ${tool}`;
  }
  return null;
}

/** Runs `nft` with these arguments (throws on failure). */
export function nft(...args) {
  execFileSync('nft', args, { stdio: 'pipe' });
}

/** Whether this process is the copy running inside the namespace. */
export const insideNamespace = process.env.SEALED_NETNS === '1';

/**
 * The outside half of a namespace test: runs `file` again inside a fresh network
 * namespace and asserts its one test (named `inside the namespace…`) passed.
 */
export function runInNamespace(t, file, timeoutMs) {
  const missing = missingTools();
  if (missing) {
    t.skip(`needs root, unshare, nft and ip (${missing})`);
    return;
  }
  // Not a nested `node --test` (it would skip itself): the file runs its test directly.
  const { NODE_TEST_CONTEXT: _nested, ...env } = process.env;
  const run = spawnSync('unshare', ['-n', 'sh', '-c', `ip link set lo up && exec node "${file}"`], {
    env: { ...env, SEALED_NETNS: '1' },
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  process.stdout.write(run.stdout ?? '');
  process.stderr.write(run.stderr ?? '');
  assert.equal(run.status, 0, 'the test inside the network namespace failed');
  assert.match(run.stdout ?? '', /^ok 1 - inside the namespace/m, 'the inner test ran and passed');
}

/**
 * Drops at the namespace's input hook what the nftables `match` expressions select
 * (e.g. `'udp', 'dport', '40000'`) until the returned function — or the end of test
 * `t` — removes the rule again.
 */
export function dropOnInput(t, ...match) {
  nft('add', 'table', 'inet', 'sealedtest');
  t.after(() => spawnSync('nft', ['delete', 'table', 'inet', 'sealedtest']));
  nft('add', 'chain', 'inet', 'sealedtest', 'input', '{ type filter hook input priority 0; policy accept; }');
  nft('add', 'rule', 'inet', 'sealedtest', 'input', ...match, 'drop');
  return () => nft('delete', 'table', 'inet', 'sealedtest');
}
