import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readMounts, mountAt } from '../../src/system/mount.js';
import { cleanupDir, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';
import { makeLoopDevice, sh, unmountAll, type TestLoop } from '../helpers/loopdev.js';

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

async function probeReady(d: DriverProcess): Promise<boolean> {
  return (await d.clients.identity.Probe({})).ready.value;
}

describe('device-backed pools', () => {
  let dir: string;
  const loops: TestLoop[] = [];
  let d: DriverProcess | undefined;

  beforeAll(() => {
    dir = scratchDir('devpool');
  });
  afterEach(async () => {
    await d?.stop();
    d = undefined;
  });
  afterAll(async () => {
    await cleanupDir(dir);
    for (const l of loops) l.detach();
  });

  const loop = (name: string, mib: number) => {
    const l = makeLoopDevice(`${dir}/${name}.img`, mib);
    loops.push(l);
    return l;
  };

  it('formats a blank device XFS once, mounts it, and reuses it after a restart', async () => {
    const l = loop('blank', 512);
    const mnt = `${dir}/fast`;
    d = await startDriver({ dir, args: ['--pool', `fast=${mnt}:device=${l.device}`] });
    expect(await probeReady(d)).toBe(true);
    const m = mountAt(await readMounts(), mnt);
    expect(m?.fsType).toBe('xfs');
    const uuid = sh('blkid', ['-p', '-s', 'UUID', '-o', 'value', l.device]).trim();
    expect(uuid).not.toBe('');
    writeFileSync(`${mnt}/marker`, 'kept');
    expect(d.logs()).toContain('formatted blank device as XFS');
    await d.stop();

    d = await startDriver({ dir, args: ['--pool', `fast=${mnt}:device=${l.device}`] });
    expect(await probeReady(d)).toBe(true);
    expect(d.logs()).not.toContain('formatted blank device as XFS');
    expect(sh('blkid', ['-p', '-s', 'UUID', '-o', 'value', l.device]).trim()).toBe(uuid);
    expect(readFileSync(`${mnt}/marker`, 'utf8')).toBe('kept');
    // Only one mount of the pool, however many restarts.
    expect((await readMounts()).filter((x) => x.mountPoint === mnt)).toHaveLength(1);
    await d.stop();
    d = undefined;
    unmountAll(mnt);
  });

  const refused: Array<[string, (dev: string, file: string) => void, RegExp]> = [
    ['an ext4 filesystem', (dev) => execFileSync('mkfs.ext4', ['-q', dev]), /ext4 filesystem/],
    ['a partition table', (dev) => execFileSync('sfdisk', ['-q', dev], { input: 'label: gpt\n,10M\n' }), /gpt partition table/],
    [
      'unrecognised data',
      (_dev, file) => {
        const fd = execFileSync('dd', ['if=/dev/urandom', `of=${file}`, 'bs=4096', 'count=1', 'seek=3', 'conv=notrunc'], { stdio: 'ignore' });
        return fd;
      },
      /not a filesystem/,
    ],
  ];

  for (const [what, prepare, reason] of refused) {
    it(`leaves a device holding ${what} untouched and reports the pool failed`, async () => {
      const l = loop(what.replace(/\W/g, '-'), 64);
      prepare(l.device, l.file);
      execFileSync('sync');
      const before = sha256(l.file);
      const mnt = `${dir}/refused-${what.replace(/\W/g, '-')}`;
      d = await startDriver({ dir, args: ['--pool', `other=${mnt}:device=${l.device}`] });
      expect(await probeReady(d)).toBe(false);
      await d.waitForLog(reason);
      await d.waitForLog('was not touched');
      expect(mountAt(await readMounts(), mnt)).toBeUndefined();
      await d.stop();
      d = undefined;
      expect(sha256(l.file)).toBe(before);
    });
  }

  it('refuses a path that is not a block device', async () => {
    mkdirSync(`${dir}/notdev`, { recursive: true });
    writeFileSync(`${dir}/notdev/file`, 'x');
    d = await startDriver({ dir, args: ['--pool', `p=${dir}/notdev/mnt:device=${dir}/notdev/file`] });
    expect(await probeReady(d)).toBe(false);
    expect(d.logs()).toContain('is not a block device');
  });
});
