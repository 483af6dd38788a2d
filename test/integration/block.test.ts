import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { blockImagePath } from '../../src/format/layout.js';
import { listLoopDevices } from '../../src/system/loop.js';
import { BLOCK_CAP, MOUNT_CAP, cleanupDir, expectCode, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';

const MiB = 1024 * 1024;

function pattern(seed: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  return b;
}

function writeDevice(dev: string, data: Buffer, offset: number): void {
  const fd = openSync(dev, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
  execFileSync('sync');
}

function readDevice(dev: string, size: number, offset: number): Buffer {
  const fd = openSync(dev, 'r');
  const b = Buffer.alloc(size);
  try {
    readSync(fd, b, 0, size, offset);
  } finally {
    closeSync(fd);
  }
  return b;
}

async function loopsUnder(dir: string): Promise<string[]> {
  return (await listLoopDevices()).filter((d) => d.backFile.startsWith(dir)).map((d) => d.name);
}

describe('block volumes on loop devices', () => {
  let dir: string;
  let pool: string;
  let d: DriverProcess | undefined;

  beforeAll(() => {
    dir = scratchDir('block');
    pool = `${dir}/pool`;
    mkdirSync(pool);
    mkdirSync(`${dir}/pods`);
  });
  afterEach(async () => {
    await d?.stop();
    d = undefined;
  });
  afterAll(async () => {
    await cleanupDir(dir);
    for (const l of await loopsUnder(dir)) execFileSync('losetup', ['-d', l]);
  });

  const start = async () => (d = await startDriver({ dir, args: ['--pool', `default=${pool}`] }));

  it('creates an image of the requested size rounded up to whole MiB, sparse', async () => {
    const drv = await start();
    const res = await drv.clients.controller.CreateVolume({ name: 'blk-size', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(10 * MiB + 1) } });
    expect(res.volume.capacity_bytes).toBe(String(11 * MiB));
    const st = statSync(path.join(pool, blockImagePath('blk-size')));
    expect(st.size).toBe(11 * MiB);
    expect(st.blocks * 512).toBeLessThan(MiB);
    await expectCode(
      drv.clients.controller.CreateVolume({ name: 'blk-limit', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(MiB + 1), limit_bytes: String(MiB + 1) } }),
      'OUT_OF_RANGE',
    );
    await drv.clients.controller.DeleteVolume({ volume_id: res.volume.volume_id });
    expect(() => statSync(path.join(pool, blockImagePath('blk-size')))).toThrow();
  });

  it('refuses mixed access types and publishing in the wrong mode', async () => {
    const drv = await start();
    await expectCode(drv.clients.controller.CreateVolume({ name: 'blk-mixed', volume_capabilities: [BLOCK_CAP, MOUNT_CAP] }), 'INVALID_ARGUMENT');
    const blk = await drv.clients.controller.CreateVolume({ name: 'blk-mode', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(4 * MiB) } });
    const fs = await drv.clients.controller.CreateVolume({ name: 'fs-mode', volume_capabilities: [MOUNT_CAP] });
    await expectCode(drv.clients.node.NodePublishVolume({ volume_id: blk.volume.volume_id, target_path: `${dir}/pods/wrong1`, volume_capability: MOUNT_CAP }), 'FAILED_PRECONDITION');
    await expectCode(drv.clients.node.NodePublishVolume({ volume_id: fs.volume.volume_id, target_path: `${dir}/pods/wrong2`, volume_capability: BLOCK_CAP }), 'FAILED_PRECONDITION');
    expect(await loopsUnder(dir)).toEqual([]);
    const v = await drv.clients.controller.ValidateVolumeCapabilities({ volume_id: blk.volume.volume_id, volume_capabilities: [MOUNT_CAP] });
    expect(v.confirmed).toBeNull();
    await drv.clients.controller.DeleteVolume({ volume_id: blk.volume.volume_id });
    await drv.clients.controller.DeleteVolume({ volume_id: fs.volume.volume_id });
  });

  it('keeps data across unpublish, restart and kill -9; one loop device per image; none left after', async () => {
    let drv = await start();
    const { volume } = await drv.clients.controller.CreateVolume({ name: 'blk-data', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(16 * MiB) } });
    const id = volume.volume_id;
    const t1 = `${dir}/pods/p1/dev`;
    const t2 = `${dir}/pods/p2/dev`;
    await drv.clients.node.NodePublishVolume({ volume_id: id, target_path: t1, volume_capability: BLOCK_CAP });
    await drv.clients.node.NodePublishVolume({ volume_id: id, target_path: t2, volume_capability: BLOCK_CAP });
    expect(statSync(t1).isBlockDevice()).toBe(true);
    expect(await loopsUnder(dir)).toHaveLength(1);
    const data = pattern(7, 2 * MiB);
    writeDevice(t1, data, 3 * MiB);
    expect(readDevice(t2, 2 * MiB, 3 * MiB).equals(data)).toBe(true);

    const stats = await drv.clients.node.NodeGetVolumeStats({ volume_id: id, volume_path: t1 });
    expect(stats.usage[0].total).toBe(String(16 * MiB));
    expect(stats.volume_condition.abnormal).toBe(false);

    await drv.clients.node.NodeUnpublishVolume({ volume_id: id, target_path: t2 });
    expect(await loopsUnder(dir)).toHaveLength(1);
    await drv.clients.node.NodeUnpublishVolume({ volume_id: id, target_path: t1 });
    expect(await loopsUnder(dir)).toEqual([]);
    expect(() => statSync(t1)).toThrow();

    await drv.stop();
    drv = await start();
    await drv.clients.node.NodePublishVolume({ volume_id: id, target_path: t1, volume_capability: BLOCK_CAP });
    expect(readDevice(t1, 2 * MiB, 3 * MiB).equals(data)).toBe(true);

    // A crash while published: the device stays, and the new daemon adopts it.
    await drv.kill();
    drv = await start();
    expect(statSync(t1).isBlockDevice()).toBe(true);
    expect(await loopsUnder(dir)).toHaveLength(1);
    expect(readDevice(t1, 2 * MiB, 3 * MiB).equals(data)).toBe(true);
    await drv.clients.node.NodePublishVolume({ volume_id: id, target_path: t1, volume_capability: BLOCK_CAP });
    expect(await loopsUnder(dir)).toHaveLength(1);
    await drv.clients.node.NodeUnpublishVolume({ volume_id: id, target_path: t1 });
    await drv.clients.controller.DeleteVolume({ volume_id: id });
    expect(await loopsUnder(dir)).toEqual([]);
  });

  it('re-makes attachments after a reboot and detaches loops of deleted images', async () => {
    let drv = await start();
    const { volume } = await drv.clients.controller.CreateVolume({ name: 'blk-reboot', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(8 * MiB) } });
    const target = `${dir}/pods/p3/dev`;
    await drv.clients.node.NodePublishVolume({ volume_id: volume.volume_id, target_path: target, volume_capability: BLOCK_CAP });
    const data = pattern(11, MiB);
    writeDevice(target, data, 0);
    await drv.stop();
    // A reboot: mounts and loop devices are gone, the files stay.
    execFileSync('umount', [target]);
    for (const l of await loopsUnder(dir)) execFileSync('losetup', ['-d', l]);
    expect(await loopsUnder(dir)).toEqual([]);
    // And a loop device whose image was deleted behind our back.
    const stray = path.join(pool, blockImagePath('stray'));
    execFileSync('truncate', ['-s', '1M', stray]);
    const strayDev = execFileSync('losetup', ['--find', '--show', stray]).toString().trim();
    execFileSync('rm', [stray]);

    drv = await start();
    expect(statSync(target).isBlockDevice()).toBe(true);
    expect(readDevice(target, MiB, 0).equals(data)).toBe(true);
    const loops = await loopsUnder(dir);
    expect(loops).toHaveLength(1);
    expect(loops).not.toContain(strayDev);
    await drv.clients.node.NodeUnpublishVolume({ volume_id: volume.volume_id, target_path: target });
    await drv.clients.controller.DeleteVolume({ volume_id: volume.volume_id });
    expect(await loopsUnder(dir)).toEqual([]);
  });

  it('reports an abnormal condition when the image is gone', async () => {
    const drv = await start();
    const { volume } = await drv.clients.controller.CreateVolume({ name: 'blk-gone', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(MiB) } });
    const image = path.join(pool, blockImagePath('blk-gone'));
    execFileSync('mv', [image, `${image}.moved`]);
    const stats = await drv.clients.node.NodeGetVolumeStats({ volume_id: volume.volume_id, volume_path: image });
    expect(stats.volume_condition.abnormal).toBe(true);
    execFileSync('mv', [`${image}.moved`, image]);
    await drv.clients.controller.DeleteVolume({ volume_id: volume.volume_id });
  });
});
