/**
 * The pool supervisor on the real daemon: a blank device that shows up after start is left alone by
 * Identity Probe, /readyz and /metrics, however often they are called, and is formatted and mounted by
 * the supervisor's timed retry.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devString } from '../../src/system/loop.js';
import { mountAt, readMounts } from '../../src/system/mount.js';
import { cleanupDir, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';
import { makeLoopDevice, unmountAll, type TestLoop } from '../helpers/loopdev.js';

/**
 * How long the daemon waits before its first retry: the window in which only reads reach the pool.
 * 5 s was too short on a loaded 2-core CI machine (the reads took longer and the test could not tell).
 */
const RETRY_S = 15;
const SCRAPES = 5;

interface LogLine {
  time: string;
  msg: string;
  [k: string]: unknown;
}

function logLines(d: DriverProcess): LogLine[] {
  return d
    .logs()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** blkid's low-level probe of the device: '' when it finds no signature at all (exit 2). */
function signature(device: string): string {
  const r = spawnSync('blkid', ['-p', '-o', 'export', device], { encoding: 'utf8' });
  if (r.status === 2) return '';
  if (r.status !== 0) throw new Error(`blkid -p ${device}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function firstMiBIsZero(file: string): boolean {
  return readFileSync(file).subarray(0, 1024 * 1024).every((b) => b === 0);
}

async function get(addr: string, p: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${addr}${p}`);
  return { status: res.status, body: await res.text() };
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, ms: number, detail: () => string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${detail().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('pool supervisor (real daemon, device pool)', () => {
  let dir: string;
  let loop: TestLoop;
  let d: DriverProcess | undefined;

  beforeAll(() => {
    dir = scratchDir('supervisor');
    loop = makeLoopDevice(`${dir}/disk.img`, 512);
  });
  afterAll(async () => {
    await d?.stop();
    if (dir) {
      unmountAll(`${dir}/mnt`);
      await cleanupDir(dir);
    }
    loop?.detach();
  });

  it('scrapes, probes and /readyz never format a blank device; the supervisor\'s retry does', async () => {
    const mnt = `${dir}/mnt`;
    const devices = `${dir}/devices`;
    const devPath = `${devices}/p`;
    // Where the device will be published, a placeholder first (as a hostPath FileOrCreate leaves one):
    // the pool fails as "not a block device", and nothing watches a path that exists.
    mkdirSync(devices);
    writeFileSync(devPath, '');
    d = await startDriver({
      dir,
      args: ['--pool', `p=${mnt}:device=${devPath}`, '--metrics-address', '127.0.0.1:0', '--pool-retry-initial', String(RETRY_S)],
    });
    const drv = d;
    const serving = logLines(drv).find((l) => l.msg === 'serving CSI')!;
    const addr = serving.metrics as string;
    const failedAtStart = logLines(drv).find((l) => l.msg === 'pool not loaded' && l.pool === 'p');
    expect(failedAtStart?.err).toContain(`${devPath} is not a block device`);
    const retryAt = Date.parse(failedAtStart!.retryAt as string);

    // The blank device takes the placeholder's place, published the way hpp-pool-device does it
    // (mknod under a temporary name, renamed over the path).
    const [major, minor] = devString(statSync(loop.device, { bigint: true }).rdev).split(':');
    execFileSync('mknod', ['-m', '0600', `${devices}/.p.tmp`, 'b', major!, minor!]);
    renameSync(`${devices}/.p.tmp`, devPath);
    expect(statSync(devPath).isBlockDevice()).toBe(true);
    expect(signature(devPath)).toBe('');

    const reason = `pool p: ${devPath} is not a block device`;
    for (let i = 0; i < SCRAPES; i++) {
      const m = await get(addr, '/metrics');
      expect(m.status).toBe(200);
      expect(m.body).toMatch(/^hpp_pool_ready\{pool="p"\} 0$/m);
      expect(m.body).toMatch(/^hpp_pool_state\{pool="p",state="failed"\} 1$/m);
      expect(m.body).not.toMatch(/^hpp_pool_capacity_bytes\{pool="p"\}/m);
      expect((await drv.clients.identity.Probe({})).ready.value).toBe(false);
      expect(await get(addr, '/readyz')).toEqual({ status: 503, body: `not ok: ${reason}\n` });
    }
    // Probe says why in the log (its answer has no room for it).
    await drv.waitForLog(`"problems":["${reason}"],"msg":"probe: not ready"`);

    // Still blank, not mounted anywhere, and no preparation was even started.
    expect(signature(devPath)).toBe('');
    expect(firstMiBIsZero(loop.file)).toBe(true);
    const mounts = await readMounts();
    expect(mountAt(mounts, mnt)).toBeUndefined();
    expect(mounts.filter((m) => m.device === `${major}:${minor}`)).toEqual([]);
    expect(logLines(drv).filter((l) => l.msg === 'preparing pool' || l.msg === 'device is blank: formatting XFS')).toEqual([]);
    // All of that inside the window: the retry was not due yet.
    expect(Date.now(), 'the checks took longer than the retry delay; raise RETRY_S').toBeLessThan(retryAt);

    // The retry, and only the retry, prepares it.
    await waitFor('Probe ready', async () => (await drv.clients.identity.Probe({})).ready.value === true, RETRY_S * 1000 + 20_000, () => drv.logs());
    const lines = logLines(drv);
    const preparing = lines.findIndex((l) => l.msg === 'preparing pool' && l.pool === 'p');
    const formatting = lines.findIndex((l) => l.msg === 'device is blank: formatting XFS');
    expect(lines[preparing]).toMatchObject({ trigger: 'retry', failures: 1 });
    expect(formatting).toBeGreaterThan(preparing);
    expect(Date.parse(lines[formatting]!.time)).toBeGreaterThanOrEqual(retryAt);
    expect(lines.filter((l) => l.msg === 'device is blank: formatting XFS')).toHaveLength(1);

    expect(signature(devPath)).toMatch(/^TYPE=xfs$/m);
    expect(mountAt(await readMounts(), mnt)?.fsType).toBe('xfs');
    expect(await get(addr, '/readyz')).toEqual({ status: 200, body: 'ok\n' });
    const m = (await get(addr, '/metrics')).body;
    expect(m).toMatch(/^hpp_pool_ready\{pool="p"\} 1$/m);
    expect(m).toMatch(/^hpp_pool_state\{pool="p",state="ready"\} 1$/m);
    expect(m).not.toMatch(/^hpp_pool_state\{pool="p",state="failed"\}/m);
    expect(m).toMatch(/^hpp_pool_capacity_bytes\{pool="p"\} [1-9]/m);

    expect(await drv.stop()).toBe(0);
    d = undefined;
    unmountAll(mnt);
  });
});
