import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { blockImagePath, poolLayout, recordFile } from '../../src/format/layout.js';
import { diskImageSize, parseOverhead } from '../../src/volumes/disk-image.js';
import { BLOCK_CAP, MOUNT_CAP, cleanupDir, expectCode, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';
import { makeLoopDevice, unmountAll, type TestLoop } from '../helpers/loopdev.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

// Expected sizes worked out by hand from CDI's rule, round_down_MiB(ceil((1 - overhead) * size)).
const CASES: Array<[string, number, string, number]> = [
  ['1 GiB at 0.055', GiB, '0.055', 1013972992],
  ['10 GiB at 0.055', 10 * GiB, '0.055', 10146021376],
  ['an odd size at 0.1', 1000000007, '0.1', 899678208],
  ['a tiny odd size at 0.055', 3 * MiB + 12345, '0.055', 2 * MiB],
];

describe('disk.img size formula', () => {
  for (const [what, size, overhead, expected] of CASES) {
    it(what, () => expect(diskImageSize(BigInt(size), parseOverhead(overhead, 'x'))).toBe(BigInt(expected)));
  }
  it('refuses overheads outside [0, 1)', () => {
    for (const bad of ['1', '1.0', '-0.1', 'abc', '', '0.1.2', '5']) expect(() => parseOverhead(bad, 'x')).toThrow();
  });
});

describe('KubeVirt disk images, preallocation and expansion', () => {
  let dir: string;
  let d: DriverProcess | undefined;
  const loops: TestLoop[] = [];

  beforeAll(() => {
    dir = scratchDir('diskimg');
    mkdirSync(`${dir}/pool`);
    mkdirSync(`${dir}/pods`);
  });
  afterEach(async () => {
    await d?.stop();
    d = undefined;
  });
  afterAll(async () => {
    await cleanupDir(dir);
    for (const l of loops) l.detach();
  });

  const record = (pool: string, name: string) => JSON.parse(readFileSync(recordFile(poolLayout(pool).volumesDir, name), 'utf8'));

  it('creates disk.img of the formula size, owned by qemu, sparse unless preallocated', async () => {
    d = await startDriver({ dir, args: ['--pool', `default=${dir}/pool`] });
    for (const [what, size, overhead, expected] of CASES.slice(0, 3)) {
      const name = `img-${what.replace(/\W+/g, '-')}`;
      await d.clients.controller.CreateVolume({
        name,
        volume_capabilities: [MOUNT_CAP],
        capacity_range: { required_bytes: String(size) },
        parameters: { createDiskImage: 'true', filesystemOverhead: overhead },
      });
      const st = statSync(`${dir}/pool/${name}/disk.img`);
      expect(st.size).toBe(expected);
      expect([st.uid, st.gid]).toEqual([107, 107]);
      expect(st.mode & 0o777).toBe(0o660);
      expect(st.blocks * 512).toBeLessThan(MiB);
      expect(record(`${dir}/pool`, name).preallocation).toBe('none');
    }
    await d.clients.controller.CreateVolume({
      name: 'img-prealloc',
      volume_capabilities: [MOUNT_CAP],
      capacity_range: { required_bytes: String(GiB) },
      parameters: { createDiskImage: 'true', preallocation: 'true' },
    });
    const st = statSync(`${dir}/pool/img-prealloc/disk.img`);
    expect(st.size).toBe(1013972992);
    expect(st.blocks * 512).toBeGreaterThanOrEqual(st.size);
    expect(record(`${dir}/pool`, 'img-prealloc').preallocation).toBe('fallocate');
    expect(record(`${dir}/pool`, 'img-prealloc').diskImage).toEqual({ overhead: '0.055' });
  });

  it('uses the pool overhead, then the global default, when the StorageClass names none', async () => {
    d = await startDriver({ dir, args: ['--pool', `default=${dir}/pool`, '--pool', `other=${dir}/pool2:overhead=0.1`, '--filesystem-overhead', '0.2'] });
    mkdirSync(`${dir}/pool2`, { recursive: true });
    await d.clients.controller.CreateVolume({ name: 'ov-pool', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: '1000000007' }, parameters: { storagePool: 'other', createDiskImage: 'true' } });
    expect(statSync(`${dir}/pool2/ov-pool/disk.img`).size).toBe(899678208);
    await d.clients.controller.CreateVolume({ name: 'ov-global', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(100 * MiB) }, parameters: { storagePool: 'default', createDiskImage: 'true' } });
    expect(statSync(`${dir}/pool/ov-global/disk.img`).size).toBe(80 * MiB);
    await expectCode(
      d.clients.controller.CreateVolume({ name: 'ov-bad', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(MiB) }, parameters: { createDiskImage: 'true', filesystemOverhead: '1.5', storagePool: 'default' } }),
      'INVALID_ARGUMENT',
    );
    await expectCode(
      d.clients.controller.CreateVolume({ name: 'ov-bad2', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(MiB) }, parameters: { preallocation: 'yes', storagePool: 'default' } }),
      'INVALID_ARGUMENT',
    );
    await expectCode(
      d.clients.controller.CreateVolume({ name: 'ov-block', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(MiB) }, parameters: { createDiskImage: 'true', storagePool: 'default' } }),
      'INVALID_ARGUMENT',
    );
  });

  it('never makes a disk.img that cannot hold 1 MiB: the capacity is rounded up within limit_bytes, else OUT_OF_RANGE and nothing is left', async () => {
    const pool = `${dir}/pool`;
    d = await startDriver({ dir, args: ['--pool', `default=${pool}`] });
    const create = (name: string, range: Record<string, string>, params: Record<string, string> = {}) =>
      d!.clients.controller.CreateVolume({ name, volume_capabilities: [MOUNT_CAP], capacity_range: range, parameters: { createDiskImage: 'true', ...params } });

    // At 0.055, 1109604 bytes is the smallest volume whose disk.img holds 1 MiB.
    const tiny = await create('tiny', { required_bytes: String(MiB) });
    expect(tiny.volume.capacity_bytes).toBe('1109604');
    expect(statSync(`${pool}/tiny/disk.img`).size).toBe(MiB);
    expect((await create('tiny', { required_bytes: String(MiB) })).volume.capacity_bytes).toBe('1109604');
    expect((await create('tiny-lim', { required_bytes: '1000', limit_bytes: String(2 * MiB) })).volume.capacity_bytes).toBe('1109604');
    expect(statSync(`${pool}/tiny-lim/disk.img`).size).toBe(MiB);

    const refused = ['no-room', 'no-room-limit-only', 'near-one', 'near-one-unlimited'];
    const e1 = await expectCode(create('no-room', { required_bytes: String(MiB), limit_bytes: String(MiB) }), 'OUT_OF_RANGE');
    expect(e1.details).toMatch(/disk\.img/);
    expect(e1.details).toContain('1109604');
    expect(e1.details).toContain('limit_bytes 1048576');
    await expectCode(create('no-room-limit-only', { limit_bytes: String(MiB) }), 'OUT_OF_RANGE');
    // An overhead close to 1 leaves disk.img empty for any size a pool has.
    await expectCode(create('near-one', { required_bytes: String(64 * MiB), limit_bytes: String(64 * MiB) }, { filesystemOverhead: '0.999999999' }), 'OUT_OF_RANGE');
    const e4 = await expectCode(create('near-one-unlimited', { required_bytes: String(64 * MiB) }, { filesystemOverhead: '0.999999999' }), 'OUT_OF_RANGE');
    expect(e4.details).toMatch(/disk\.img/);
    await d.stop();

    // The same rule for a pool's own overhead.
    d = await startDriver({ dir, args: ['--pool', `default=${pool}:overhead=0.999999999`] });
    refused.push('pool-near-one');
    await expectCode(create('pool-near-one', { required_bytes: String(64 * MiB), limit_bytes: String(64 * MiB) }), 'OUT_OF_RANGE');

    for (const name of refused) {
      expect(existsSync(`${pool}/${name}`), name).toBe(false);
      expect(existsSync(recordFile(poolLayout(pool).volumesDir, name)), name).toBe(false);
    }
    expect(readdirSync(poolLayout(pool).tmpDir)).toEqual([]);
    const listed = (await d.clients.controller.ListVolumes({})).entries.map((e: { volume: { volume_id: string } }) => e.volume.volume_id);
    expect(listed.filter((id: string) => refused.some((n) => id.endsWith(`:${n}`)))).toEqual([]);
    for (const name of ['tiny', 'tiny-lim']) await d.clients.controller.DeleteVolume({ volume_id: `test-node:default:${name}` });
  });

  it('falls back to writing zeros where fallocate is not supported (ext2) and records it', async () => {
    const l = makeLoopDevice(`${dir}/ext2.img`, 256);
    loops.push(l);
    execFileSync('mkfs.ext2', ['-q', l.device]);
    mkdirSync(`${dir}/ext2`);
    execFileSync('mount', [l.device, `${dir}/ext2`]);
    try {
      d = await startDriver({ dir, args: ['--pool', `e2=${dir}/ext2`] });
      await d.clients.controller.CreateVolume({ name: 'full-img', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(64 * MiB) }, parameters: { createDiskImage: 'true', preallocation: 'true' } });
      const st = statSync(`${dir}/ext2/full-img/disk.img`);
      expect(st.size).toBe(60 * MiB);
      expect(st.blocks * 512).toBeGreaterThanOrEqual(st.size);
      expect(record(`${dir}/ext2`, 'full-img').preallocation).toBe('full');
      await d.clients.controller.CreateVolume({ name: 'full-blk', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(32 * MiB) }, parameters: { preallocation: 'true' } });
      const b = statSync(path.join(dir, 'ext2', blockImagePath('full-blk')));
      expect(b.blocks * 512).toBeGreaterThanOrEqual(32 * MiB);
      expect(record(`${dir}/ext2`, 'full-blk').preallocation).toBe('full');
      await d.waitForLog('fallocate not supported here: writing zeros');
      // The end of each zero-fill is logged in the call's log with the volume, the method and the rate.
      const logs = await d.waitForLog(/"volume":"full-blk"[^\n]*"msg":"preallocated"/);
      const done = logs.split('\n').filter((l) => l.includes('"msg":"preallocated"')).map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(done.map((l) => [l.volume, l.method, l.bytes])).toEqual([
        ['full-img', 'full', String(60 * MiB)],
        ['full-blk', 'full', String(32 * MiB)],
      ]);
      for (const l of done) expect(typeof l.requestId === 'string' && typeof l.mibPerSecond === 'number', JSON.stringify(l)).toBe(true);
      await d.stop();
      d = undefined;
    } finally {
      unmountAll(`${dir}/ext2`);
    }
  });

  it('expands a published block volume online: the device grows without unpublishing', async () => {
    d = await startDriver({ dir, args: ['--pool', `default=${dir}/pool`] });
    const { volume } = await d.clients.controller.CreateVolume({ name: 'grow-blk', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(16 * MiB) } });
    const target = `${dir}/pods/grow/dev`;
    await d.clients.node.NodePublishVolume({ volume_id: volume.volume_id, target_path: target, volume_capability: BLOCK_CAP });
    const size = () => Number(execFileSync('blockdev', ['--getsize64', target]).toString().trim());
    expect(size()).toBe(16 * MiB);
    execFileSync('dd', ['if=/dev/urandom', `of=${target}`, 'bs=1M', 'count=1', 'oflag=direct'], { stdio: 'ignore' });
    const hashHead = () => createHash('sha256').update(readFileSync(target).subarray(0, 16 * MiB)).digest('hex');
    const before = hashHead();

    await expectCode(d.clients.controller.ControllerExpandVolume({ volume_id: volume.volume_id, capacity_range: { required_bytes: String(8 * MiB) } }), 'OUT_OF_RANGE');
    const res = await d.clients.controller.ControllerExpandVolume({ volume_id: volume.volume_id, capacity_range: { required_bytes: String(32 * MiB - 5) } });
    expect(res.capacity_bytes).toBe(String(32 * MiB));
    expect(res.node_expansion_required).toBe(true);
    await d.clients.node.NodeExpandVolume({ volume_id: volume.volume_id, volume_path: target, capacity_range: { required_bytes: String(32 * MiB) } });
    expect(size()).toBe(32 * MiB);
    expect(hashHead()).toBe(before);
    // Idempotent: the same expansion again changes nothing.
    const again = await d.clients.controller.ControllerExpandVolume({ volume_id: volume.volume_id, capacity_range: { required_bytes: String(32 * MiB) } });
    expect(again.capacity_bytes).toBe(String(32 * MiB));
    await d.clients.node.NodeUnpublishVolume({ volume_id: volume.volume_id, target_path: target });
    await d.clients.controller.DeleteVolume({ volume_id: volume.volume_id });
  });

  it('grows disk.img keeping the overhead reserve when a filesystem volume expands', async () => {
    d = await startDriver({ dir, args: ['--pool', `default=${dir}/pool`] });
    const { volume } = await d.clients.controller.CreateVolume({ name: 'grow-fs', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(GiB) }, parameters: { createDiskImage: 'true' } });
    const target = `${dir}/pods/growfs`;
    await d.clients.node.NodePublishVolume({ volume_id: volume.volume_id, target_path: target, volume_capability: MOUNT_CAP });
    const res = await d.clients.controller.ControllerExpandVolume({ volume_id: volume.volume_id, capacity_range: { required_bytes: String(2 * GiB) }, volume_capability: MOUNT_CAP });
    expect(res.node_expansion_required).toBe(true);
    await d.clients.node.NodeExpandVolume({ volume_id: volume.volume_id, volume_path: target });
    const st = statSync(`${target}/disk.img`);
    expect(st.size).toBe(2028994560);
    expect([st.uid, st.gid]).toEqual([107, 107]);
    await expectCode(d.clients.node.NodeExpandVolume({ volume_id: volume.volume_id, volume_path: target, capacity_range: { required_bytes: String(4 * GiB) } }), 'FAILED_PRECONDITION');
    await expectCode(d.clients.node.NodeExpandVolume({ volume_id: volume.volume_id, volume_path: `${dir}/pods/elsewhere` }), 'NOT_FOUND');
    await d.clients.node.NodeUnpublishVolume({ volume_id: volume.volume_id, target_path: target });
  });
});
