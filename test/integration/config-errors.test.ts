// The built daemon refuses bad configuration with one line on stderr and exit status 2, never a stack
// trace; --help shows every pool form and key; `npm start` (hack/dev-start.mjs) binds metrics to loopback.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuiltProcess } from '../helpers/built-process.js';
import { DRIVER_JS, ROOT } from '../helpers/daemon.js';
import { cleanupDir, scratchDir } from '../helpers/driver.js';
import { POOL_FLAG_OPTIONS, POOL_KEY_NAMES } from '../../src/pools/pool-keys.js';

/** The variables the daemon reads, so that the test's own environment cannot change an outcome. */
const OURS = /^(HPP_|CSI_ENDPOINT$|NODE_NAME$|DRIVER_NAME$|LOG_LEVEL$|METRICS_ADDRESS$|PEER_|REGISTRATION_DIR$|KUBELET_REGISTRATION_PATH$)/;
const cleanEnv = (extra: Record<string, string> = {}) => ({ ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !OURS.test(k))), ...extra });

function run(script: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('hpp-csi-driver: configuration errors', () => {
  let dir: string;
  beforeAll(() => {
    dir = scratchDir('config-errors');
    mkdirSync(`${dir}/pool`);
    writeFileSync(`${dir}/unknown-key.json`, '[{"name": "fast", "path": "/var/hpp-fast", "overcommitratio": 2}]');
    writeFileSync(`${dir}/bad.json`, '[{"name": "fast",');
  });
  afterAll(async () => {
    await cleanupDir(dir);
  });

  const base = () => ['--endpoint', `unix://${dir}/csi.sock`, '--node-name', 'test-node', '--metrics-address', 'off', '--pool', `default=${dir}/pool`];
  const cases: { what: string; args: () => string[]; env?: Record<string, string>; message: () => string }[] = [
    { what: '--log-level verbose', args: () => [...base(), '--log-level', 'verbose'], message: () => '--log-level "verbose": not a log level' },
    { what: 'LOG_LEVEL=verbose', args: base, env: { LOG_LEVEL: 'verbose' }, message: () => 'LOG_LEVEL "verbose": not a log level' },
    { what: '--pools-file /nonexistent', args: () => [...base(), '--pools-file', '/nonexistent'], message: () => '--pools-file /nonexistent: cannot read the pools file: ENOENT' },
    { what: 'HPP_POOLS_FILE of a directory', args: base, env: { HPP_POOLS_FILE: '/' }, message: () => 'HPP_POOLS_FILE /: cannot read the pools file: EISDIR' },
    { what: 'a pools file that is not JSON', args: () => [...base(), '--pools-file', `${dir}/bad.json`], message: () => `${dir}/bad.json: not valid JSON` },
    {
      what: 'an unknown key in the pools file',
      args: () => [...base(), '--pools-file', `${dir}/unknown-key.json`],
      message: () => `${dir}/unknown-key.json[0] (pool fast): unknown key "overcommitratio" (did you mean "overcommitRatio"?)`,
    },
    { what: 'a bad pool flag', args: () => [...base(), '--pool', 'x=/x:overcomit=2'], message: () => '--pool "x=/x:overcomit=2": unknown option "overcomit" (did you mean "overcommit"?)' },
    { what: 'a bad HPP_POOLS', args: () => base().slice(0, -2), env: { HPP_POOLS: 'x' }, message: () => 'HPP_POOLS "x": expected NAME=PATH' },
    { what: 'a bad listen address', args: () => [...base(), '--metrics-address', '0.0.0.0'], message: () => '--metrics-address: "0.0.0.0" is not [HOST]:PORT' },
    { what: 'a bad METRICS_ADDRESS', args: () => base().filter((a) => a !== '--metrics-address' && a !== 'off'), env: { METRICS_ADDRESS: ':70000' }, message: () => 'METRICS_ADDRESS: ":70000": port 70000 is out of range' },
    { what: '--pool-retry-max', args: () => [...base(), '--pool-retry-max', '1m'], message: () => '--pool-retry-max "1m": expected seconds' },
    { what: 'HPP_POOL_RETRY_INITIAL', args: base, env: { HPP_POOL_RETRY_INITIAL: '-1' }, message: () => 'HPP_POOL_RETRY_INITIAL "-1": expected seconds' },
    { what: 'HPP_FILESYSTEM_OVERHEAD', args: base, env: { HPP_FILESYSTEM_OVERHEAD: '1.5' }, message: () => 'HPP_FILESYSTEM_OVERHEAD 1.5 must be below 1' },
    { what: 'HPP_MOUNT_BACKEND', args: base, env: { HPP_MOUNT_BACKEND: 'mount' }, message: () => 'HPP_MOUNT_BACKEND "mount": expected auto or tools' },
    { what: 'an unknown flag', args: () => [...base(), '--pool-retry'], message: () => "Unknown option '--pool-retry'" },
    // Found only once the daemon starts: still the configuration's fault, still one line.
    { what: 'a missing registration directory', args: () => [...base(), '--registration-dir', `${dir}/no-registry`], message: () => `--registration-dir: registration directory ${dir}/no-registry: missing` },
  ];

  it.each(cases)('$what: exit 2, one line on stderr, no stack trace', async ({ args, env, message }) => {
    const r = await run(DRIVER_JS, args(), env);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const lines = r.stderr.split('\n');
    expect(lines, r.stderr).toHaveLength(2);
    expect(lines[1]).toBe('');
    expect(lines[0]).toMatch(/^hpp-csi-driver: /);
    expect(lines[0]).toContain(message());
  });

  it('--help lists every pool form and every pools-file key', async () => {
    const r = await run(DRIVER_JS, ['--help']);
    expect(r.code).toBe(0);
    for (const o of Object.keys(POOL_FLAG_OPTIONS)) expect(r.stdout, o).toContain(`:${o}=`);
    for (const k of POOL_KEY_NAMES) expect(r.stdout, k).toMatch(new RegExp(`\\n +${k}\\b`));
  });
});

describe('npm start (hack/dev-start.mjs)', () => {
  let dir: string;
  beforeAll(() => {
    dir = scratchDir('dev-start');
  });
  afterAll(async () => {
    await cleanupDir(dir);
  });

  async function devStart(env: Record<string, string>, args: string[] = []) {
    const p = new BuiltProcess({ script: path.join(ROOT, 'hack/dev-start.mjs'), args: ['--node-name', 'test-node', ...args], env: { HPP_DATA_DIR: dir, CSI_ENDPOINT: `unix://${dir}/csi.sock`, ...env } });
    try {
      await p.waitReady('"serving CSI"', 30_000, 'dev-start');
      return p.log
        .text()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    } finally {
      await p.stop();
    }
  }

  it('binds metrics to 127.0.0.1 unless told otherwise', async () => {
    const saved = process.env.METRICS_ADDRESS;
    delete process.env.METRICS_ADDRESS;
    try {
      const entries = await devStart({});
      // Served, or not when the port is taken on this machine: either way the address asked for.
      const metrics = entries.find((e) => e.msg === 'serving metrics and health' || e.msg === 'metrics and health endpoint not served');
      expect(metrics?.address).toMatch(/^127\.0\.0\.1:\d+$/);
      expect((await devStart({ METRICS_ADDRESS: 'off' })).find((e) => e.msg === 'serving CSI')?.metrics).toBe('off');
      expect((await devStart({}, ['--metrics-address', 'off'])).find((e) => e.msg === 'serving CSI')?.metrics).toBe('off');
    } finally {
      if (saved !== undefined) process.env.METRICS_ADDRESS = saved;
    }
  });
});
