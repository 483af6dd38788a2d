import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, statSync, writeSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { META_DIR, poolLayout } from '../../src/format/layout.js';
import { MOUNT_CAP, cleanupDir, expectCode, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';
import { makeLoopDevice, unmountAll, type TestLoop } from '../helpers/loopdev.js';

const MiB = 1024 * 1024;

/** Write 1 MiB chunks with fsync until the filesystem refuses; returns chunks written and the error code. */
function fillUntilRefused(file: string, maxChunks: number): { chunks: number; code?: string } {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(MiB, 0xab);
  let chunks = 0;
  try {
    for (; chunks < maxChunks; chunks++) {
      writeSync(fd, chunk);
      fsyncSync(fd);
    }
    return { chunks };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // Node 20's libuv has no name for EDQUOT and calls it UNKNOWN; the errno number is what counts.
    return { chunks, code: e.errno === -os.constants.errno.EDQUOT ? 'EDQUOT' : e.code };
  } finally {
    closeSync(fd);
  }
}

describe('size enforcement and capacity on a btrfs pool with qgroups', () => {
  let dir: string;
  let loop: TestLoop;
  let d: DriverProcess;
  let pool: string;

  beforeAll(async () => {
    dir = scratchDir('quota');
    loop = makeLoopDevice(`${dir}/btrfs.img`, 1024);
    execFileSync('mkfs.btrfs', ['-q', loop.device]);
    mkdirSync(`${dir}/mnt`);
    execFileSync('mount', [loop.device, `${dir}/mnt`]);
    execFileSync('btrfs', ['quota', 'enable', `${dir}/mnt`]);
    pool = `${dir}/mnt/pool`;
    mkdirSync(pool);
    mkdirSync(`${dir}/pods`);
    d = await startDriver({ dir, args: ['--pool', `bt=${pool}`] });
  });
  afterAll(async () => {
    await d?.stop();
    unmountAll(`${dir}/pods/v50`);
    unmountAll(`${dir}/mnt`);
    loop?.detach();
    await cleanupDir(dir);
  });

  it('says sizes are enforced', () => {
    expect(d.logs()).toContain('volume sizes are enforced');
  });

  it('a 50 MiB volume refuses the 51st MiB, and its stats match what was written', async () => {
    const { volume } = await d.clients.controller.CreateVolume({
      name: 'v50',
      volume_capabilities: [MOUNT_CAP],
      capacity_range: { required_bytes: String(50 * MiB) },
      parameters: { storagePool: 'bt' },
    });
    const target = `${dir}/pods/v50`;
    await d.clients.node.NodePublishVolume({ volume_id: volume.volume_id, target_path: target, volume_capability: MOUNT_CAP });
    const { chunks, code } = fillUntilRefused(`${target}/fill`, 60);
    expect(code).toBe('EDQUOT');
    expect(chunks).toBeLessThanOrEqual(50);
    expect(chunks).toBeGreaterThanOrEqual(48);

    execFileSync('sync');
    const stats = await d.clients.node.NodeGetVolumeStats({ volume_id: volume.volume_id, volume_path: target });
    const bytes = stats.usage.find((u: { unit: string }) => u.unit === 'BYTES');
    expect(BigInt(bytes.total)).toBe(BigInt(50 * MiB));
    const written = chunks * MiB;
    expect(Math.abs(Number(bytes.used) - written) / written).toBeLessThan(0.01);
    expect(BigInt(bytes.available)).toBe(BigInt(bytes.total) - BigInt(bytes.used));
    await d.clients.node.NodeUnpublishVolume({ volume_id: volume.volume_id, target_path: target });
  });

  it('GetCapacity goes down as volumes are created, and creates beyond it are refused', async () => {
    const cap = async () => BigInt((await d.clients.controller.GetCapacity({ parameters: { storagePool: 'bt' } })).available_capacity);
    // What volumes may still grow into is recomputed in the background, at most every 2 s, and a call
    // that starts a recompute answers from the previous one: wait until a recompute has seen the
    // previous test's writes (two readings 2 s apart agree, the first of them after a recompute).
    let before = await cap();
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 2_100));
      const now = await cap();
      if (i > 0 && now === before) break;
      before = now;
    }
    expect(before).toBeGreaterThan(100n * BigInt(MiB));
    await d.clients.controller.CreateVolume({ name: 'c100', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(100 * MiB) }, parameters: { storagePool: 'bt' } });
    const after = await cap();
    // The new volume's whole capacity is reserved (it holds nothing yet); allow 1 MiB of metadata noise.
    expect(before - after).toBeGreaterThanOrEqual(100n * BigInt(MiB) - BigInt(MiB));
    expect(before - after).toBeLessThanOrEqual(100n * BigInt(MiB) + 4n * BigInt(MiB));

    await expectCode(
      d.clients.controller.CreateVolume({ name: 'too-big', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(after + BigInt(MiB)) }, parameters: { storagePool: 'bt' } }),
      'RESOURCE_EXHAUSTED',
    );
    await expectCode(
      d.clients.controller.CreateVolume({ name: 'way-too-big', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(4096 * MiB) }, parameters: { storagePool: 'bt' } }),
      'OUT_OF_RANGE',
    );
    // Nothing of the refused ones is left behind.
    expect(execFileSync('ls', ['-A', pool]).toString().split('\n').filter(Boolean).sort()).toEqual([META_DIR, 'c100', 'v50']);
    // A volume fits exactly in what is left.
    const fits = await cap();
    await d.clients.controller.CreateVolume({ name: 'fits', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String((fits / BigInt(MiB) - 2n) * BigInt(MiB)) }, parameters: { storagePool: 'bt' } });
    expect(await cap()).toBeLessThan(3n * BigInt(MiB));

    // Deleting gives it back.
    await d.clients.controller.DeleteVolume({ volume_id: 'test-node:bt:fits' });
    await d.clients.controller.DeleteVolume({ volume_id: 'test-node:bt:c100' });
    expect(await cap()).toBeGreaterThanOrEqual(before - 2n * BigInt(MiB));
  });
});

describe('restores on a btrfs pool with qgroups', () => {
  let dir: string;
  let loop: TestLoop;
  let d: DriverProcess;
  let pool: string;

  // A pool of its own: the capacity figures of the one above must not see this one's volumes and trash.
  beforeAll(async () => {
    dir = scratchDir('quota-restore');
    loop = makeLoopDevice(`${dir}/btrfs.img`, 512);
    execFileSync('mkfs.btrfs', ['-q', loop.device]);
    mkdirSync(`${dir}/mnt`);
    execFileSync('mount', [loop.device, `${dir}/mnt`]);
    execFileSync('btrfs', ['quota', 'enable', `${dir}/mnt`]);
    pool = `${dir}/mnt/pool`;
    mkdirSync(pool);
    mkdirSync(`${dir}/pods`);
    d = await startDriver({ dir, args: ['--pool', `bt=${pool}`] });
  });
  afterAll(async () => {
    await d?.stop();
    unmountAll(`${dir}/pods/img128`);
    unmountAll(`${dir}/mnt`);
    loop?.detach();
    await cleanupDir(dir);
  });

  it('a restore into a larger volume is limited to its new size, and its preallocated disk.img, grown, fits in it', async () => {
    const { volume } = await d.clients.controller.CreateVolume({
      name: 'img64',
      volume_capabilities: [MOUNT_CAP],
      capacity_range: { required_bytes: String(64 * MiB) },
      parameters: { storagePool: 'bt', createDiskImage: 'true', preallocation: 'true' },
    });
    const { snapshot } = await d.clients.controller.CreateSnapshot({ name: 'img64-snap', source_volume_id: volume.volume_id });
    // 60 MiB copied (shared extents count in full) and 60 MiB more allocated: over the source's limit, inside the new one.
    const restored = await d.clients.controller.CreateVolume({
      name: 'img128',
      volume_capabilities: [MOUNT_CAP],
      capacity_range: { required_bytes: String(128 * MiB) },
      parameters: { storagePool: 'bt', preallocation: 'true' },
      volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } },
    });
    const img = statSync(`${pool}/img128/disk.img`);
    expect(img.size).toBe(120 * MiB);
    expect(img.blocks * 512).toBeGreaterThanOrEqual(120 * MiB);
    const target = `${dir}/pods/img128`;
    await d.clients.node.NodePublishVolume({ volume_id: restored.volume.volume_id, target_path: target, volume_capability: MOUNT_CAP });
    execFileSync('sync');
    const stats = await d.clients.node.NodeGetVolumeStats({ volume_id: restored.volume.volume_id, volume_path: target });
    const bytes = stats.usage.find((u: { unit: string }) => u.unit === 'BYTES');
    expect(BigInt(bytes.total)).toBe(BigInt(128 * MiB));
    expect(Number(bytes.used)).toBeGreaterThanOrEqual(120 * MiB);
    await d.clients.node.NodeUnpublishVolume({ volume_id: restored.volume.volume_id, target_path: target });

    // Refused for its disk image: no subvolume, no directory, nothing in tmp.
    const subvolumes = () => execFileSync('btrfs', ['subvolume', 'list', '-o', pool]).toString();
    const before = subvolumes();
    await expectCode(
      d.clients.controller.CreateVolume({
        name: 'img-refused',
        volume_capabilities: [MOUNT_CAP],
        capacity_range: { required_bytes: String(64 * MiB), limit_bytes: String(64 * MiB) },
        parameters: { storagePool: 'bt', filesystemOverhead: '0.999' },
        volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } },
      }),
      'OUT_OF_RANGE',
    );
    expect(subvolumes()).toBe(before);
    expect(existsSync(`${pool}/img-refused`)).toBe(false);
    expect(readdirSync(poolLayout(pool).tmpDir)).toEqual([]);

    await d.clients.controller.DeleteVolume({ volume_id: restored.volume.volume_id });
    await d.clients.controller.DeleteSnapshot({ snapshot_id: snapshot.snapshot_id });
    await d.clients.controller.DeleteVolume({ volume_id: volume.volume_id });
  });
});

describe('pools that cannot enforce sizes', () => {
  let dir: string;
  beforeAll(() => {
    dir = scratchDir('noquota');
  });
  afterAll(async () => {
    await cleanupDir(dir);
  });

  it('keep working and say so', async () => {
    mkdirSync(`${dir}/pool`);
    const d = await startDriver({ dir, args: ['--pool', `plain=${dir}/pool`] });
    try {
      expect(d.logs()).toContain('volume sizes are not enforced in this pool');
      expect((await d.clients.identity.Probe({})).ready.value).toBe(true);
      await d.clients.controller.CreateVolume({ name: 'v', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(MiB) } });
    } finally {
      await d.stop();
    }
  });
});
