/**
 * A pool of a Filesystem pvcTemplate on the real daemon: the pool path is where the claim's holder
 * mounts the claim's filesystem. While it is a bare directory the pool is not ready and nothing is
 * written into it; once something is mounted there the daemon serves the pool from the mount (found by
 * its timed retry: inotify does not report mounts), and when the mount goes away the pool is not ready
 * again, with the directory underneath still untouched.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupDir, MOUNT_CAP, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';

async function waitFor(what: string, fn: () => Promise<boolean>, ms: number, detail: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${detail().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('Filesystem-claim pool (real daemon)', () => {
  let dir: string;
  let d: DriverProcess | undefined;

  beforeAll(() => {
    dir = scratchDir('claim-pool');
  });
  afterAll(async () => {
    await d?.stop();
    if (dir) await cleanupDir(dir);
  });

  it('is served only while the claim is mounted at the pool path, never from the directory under it', async () => {
    const poolDir = path.join(dir, 'pool');
    // Stands in for the claim's filesystem: a directory elsewhere, bind-mounted as a holder would.
    const claim = path.join(dir, 'claim');
    mkdirSync(poolDir);
    mkdirSync(claim);
    const poolsFile = path.join(dir, 'pools.json');
    writeFileSync(poolsFile, JSON.stringify({ storagePools: [{ name: 'fs', path: poolDir, pvcTemplate: { storageClassName: 'local-fs', resources: { requests: { storage: '1Gi' } } } }] }));
    d = await startDriver({ dir, args: ['--pools-file', poolsFile, '--pool-retry-initial', '1'] });
    const drv = d;

    await drv.waitForLog(/"msg":"pool not loaded"/);
    expect(drv.logs()).toContain(`pool fs: waiting for its claim's filesystem to be mounted at ${poolDir} (nothing is mounted there)`);
    expect((await drv.clients.identity.Probe({})).ready.value).toBe(false);
    const create = { name: 'v1', capacity_range: { required_bytes: String(1 << 20) }, volume_capabilities: [MOUNT_CAP], parameters: { storagePool: 'fs' } };
    await expect(drv.clients.controller.CreateVolume(create)).rejects.toMatchObject({ code: 14 });
    expect(readdirSync(poolDir)).toEqual([]);

    const mountedAt = Date.now();
    execFileSync('mount', ['--bind', claim, poolDir]);
    // The retry backs off to at most 5 s for such a pool.
    await waitFor('Probe ready', async () => (await drv.clients.identity.Probe({})).ready.value === true, 15_000, () => drv.logs());
    const took = Date.now() - mountedAt;
    expect(took).toBeLessThan(8_000);
    const vol = await drv.clients.controller.CreateVolume(create);
    expect(vol.volume.volume_id).toBeTruthy();
    expect(existsSync(path.join(claim, '.hpp'))).toBe(true);

    // Lazy: the daemon holds the pool's lock file open, as it would when a holder's mount is taken away.
    execFileSync('umount', ['-l', poolDir]);
    // The periodic check finds the pool's metadata gone and prepares it afresh, which fails.
    await waitFor('Probe not ready', async () => (await drv.clients.identity.Probe({})).ready.value === false, 20_000, () => drv.logs());
    expect(readdirSync(poolDir)).toEqual([]);
    expect(existsSync(path.join(claim, '.hpp'))).toBe(true);

    expect(await drv.stop()).toBe(0);
    d = undefined;
  });
});
