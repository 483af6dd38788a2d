import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statfsSync, statSync, writeSync, createReadStream } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockImagePath, diskImagePath, poolLayout, recordFile, snapshotDataDir } from '../../src/format/layout.js';
import { BLOCK_CAP, MOUNT_CAP, cleanupDir, expectCode, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';
import { makeLoopDevice, unmountAll, type TestLoop } from '../helpers/loopdev.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

async function sha256(file: string, bytes?: number): Promise<string> {
  const h = createHash('sha256');
  const range = bytes === undefined ? {} : { end: bytes - 1 };
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * MiB, ...range })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** `mib` MiB of non-repeating data (each MiB differs), written and flushed. */
function fillFile(file: string, mib: number): void {
  const fd = openSync(file, 'w');
  const block = randomBytes(MiB);
  try {
    for (let i = 0; i < mib; i++) {
      block.writeUInt32LE(i, 0);
      writeSync(fd, block);
    }
  } finally {
    closeSync(fd);
  }
  execFileSync('sync');
}

function freeBytes(p: string): number {
  const s = statfsSync(p);
  return s.bavail * s.bsize;
}

function record(pool: string, kind: 'volumes' | 'snapshot-records', name: string) {
  const l = poolLayout(pool);
  return JSON.parse(readFileSync(recordFile(kind === 'volumes' ? l.volumesDir : l.snapshotRecordsDir, name), 'utf8'));
}

describe('snapshots and clones on an XFS pool with reflink', () => {
  let dir: string;
  let loop: TestLoop;
  let d: DriverProcess;
  let pool: string;
  const snapId = (name: string) => `test-node:x:${name}`;

  beforeAll(async () => {
    dir = scratchDir('snap-xfs');
    loop = makeLoopDevice(`${dir}/disk.img`, 12 * 1024);
    pool = `${dir}/xfs`;
    mkdirSync(`${dir}/pods`);
    d = await startDriver({ dir, args: ['--pool', `x=${pool}:device=${loop.device}`] });
  }, 120_000);
  afterAll(async () => {
    await d?.stop();
    await cleanupDir(`${dir}/pods`).catch(() => {});
    unmountAll(pool);
    loop?.detach();
    await cleanupDir(dir);
  });

  it('snapshots a 2 GiB volume in O(1): extents shared, free space barely moves; restores byte-identical; clones are independent', async () => {
    const { volume } = await d.clients.controller.CreateVolume({ name: 'src', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(3 * GiB) } });
    const target = `${dir}/pods/src`;
    await d.clients.node.NodePublishVolume({ volume_id: volume.volume_id, target_path: target, volume_capability: MOUNT_CAP });
    fillFile(`${target}/data.bin`, 2048);
    mkdirSync(`${target}/sub`);
    execFileSync('ln', ['-s', '../data.bin', `${target}/sub/link`]);
    const srcHash = await sha256(`${target}/data.bin`);

    const freeBefore = freeBytes(pool);
    const started = process.hrtime.bigint();
    const { snapshot } = await d.clients.controller.CreateSnapshot({ name: 'snap1', source_volume_id: volume.volume_id });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    expect(snapshot.ready_to_use).toBe(true);
    expect(snapshot.size_bytes).toBe(String(3 * GiB));
    expect(snapshot.source_volume_id).toBe(volume.volume_id);
    expect(Number(snapshot.creation_time.seconds)).toBeGreaterThan(Date.now() / 1000 - 60);
    // A copy of 2 GiB would take seconds and 2 GiB of space; a reflink takes neither.
    expect(ms).toBeLessThan(1000);
    expect(freeBefore - freeBytes(pool)).toBeLessThan(64 * MiB);
    expect(record(pool, 'snapshot-records', 'snap1').method).toBe('reflink');
    expect(execFileSync('filefrag', ['-v', path.join(pool, snapshotDataDir('snap1'), 'data.bin')]).toString()).toMatch(/shared/);

    // Restore: byte-identical, symlinks kept as symlinks.
    const restored = await d.clients.controller.CreateVolume({
      name: 'restored',
      volume_capabilities: [MOUNT_CAP],
      capacity_range: { required_bytes: String(3 * GiB) },
      volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } },
    });
    expect(restored.volume.content_source.snapshot.snapshot_id).toBe(snapshot.snapshot_id);
    expect(await sha256(`${pool}/restored/data.bin`)).toBe(srcHash);
    expect(statSync(`${pool}/restored/data.bin`).size).toBe(2 * GiB);
    expect(execFileSync('readlink', [`${pool}/restored/sub/link`]).toString().trim()).toBe('../data.bin');

    // Clone of the volume itself; writing to the clone leaves the source alone.
    const clone = await d.clients.controller.CreateVolume({
      name: 'clone',
      volume_capabilities: [MOUNT_CAP],
      capacity_range: { required_bytes: String(3 * GiB) },
      volume_content_source: { volume: { volume_id: volume.volume_id } },
    });
    expect(clone.volume.content_source.volume.volume_id).toBe(volume.volume_id);
    const fd = openSync(`${pool}/clone/data.bin`, 'r+');
    writeSync(fd, Buffer.alloc(MiB, 0x55), 0, MiB, 5 * MiB);
    closeSync(fd);
    expect(await sha256(`${target}/data.bin`)).toBe(srcHash);
    expect(await sha256(`${pool}/clone/data.bin`)).not.toBe(srcHash);
    // And writing to the source leaves the snapshot alone.
    const fd2 = openSync(`${target}/data.bin`, 'r+');
    writeSync(fd2, Buffer.alloc(MiB, 0x66), 0, MiB, 7 * MiB);
    closeSync(fd2);
    expect(await sha256(path.join(pool, snapshotDataDir('snap1'), 'data.bin'))).toBe(srcHash);

    // Deleting the source is allowed: snapshots are independent copies.
    await d.clients.node.NodeUnpublishVolume({ volume_id: volume.volume_id, target_path: target });
    await d.clients.controller.DeleteVolume({ volume_id: volume.volume_id });
    const again = await d.clients.controller.CreateVolume({
      name: 'after-source-gone',
      volume_capabilities: [MOUNT_CAP],
      volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } },
    });
    expect(again.volume.capacity_bytes).toBe(String(3 * GiB));
    expect(await sha256(`${pool}/after-source-gone/data.bin`)).toBe(srcHash);
    for (const n of ['restored', 'clone', 'after-source-gone']) await d.clients.controller.DeleteVolume({ volume_id: snapId(n) });
    await d.clients.controller.DeleteSnapshot({ snapshot_id: snapshot.snapshot_id });
  }, 120_000);

  it('snapshots and restores a block volume, larger restore grows the image', async () => {
    const { volume } = await d.clients.controller.CreateVolume({ name: 'blk', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(64 * MiB) } });
    const target = `${dir}/pods/blk/dev`;
    await d.clients.node.NodePublishVolume({ volume_id: volume.volume_id, target_path: target, volume_capability: BLOCK_CAP });
    execFileSync('dd', ['if=/dev/urandom', `of=${target}`, 'bs=1M', 'count=8', 'seek=3', 'oflag=direct'], { stdio: 'ignore' });
    const { snapshot } = await d.clients.controller.CreateSnapshot({ name: 'blk-snap', source_volume_id: volume.volume_id });
    await d.clients.node.NodeUnpublishVolume({ volume_id: volume.volume_id, target_path: target });
    const src = await sha256(path.join(pool, blockImagePath('blk')));
    const restored = await d.clients.controller.CreateVolume({
      name: 'blk-restored',
      volume_capabilities: [BLOCK_CAP],
      capacity_range: { required_bytes: String(128 * MiB) },
      volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } },
    });
    expect(restored.volume.capacity_bytes).toBe(String(128 * MiB));
    const img = path.join(pool, blockImagePath('blk-restored'));
    expect(statSync(img).size).toBe(128 * MiB);
    const head = createHash('sha256').update(readFileSync(img).subarray(0, 64 * MiB)).digest('hex');
    expect(head).toBe(src);
    // A clone into a larger volume that asks for preallocation: grown, and the grown part allocated.
    const cloned = await d.clients.controller.CreateVolume({
      name: 'blk-clone',
      volume_capabilities: [BLOCK_CAP],
      capacity_range: { required_bytes: String(96 * MiB) },
      parameters: { preallocation: 'true' },
      volume_content_source: { volume: { volume_id: volume.volume_id } },
    });
    const cimg = path.join(pool, blockImagePath('blk-clone'));
    expect(statSync(cimg).size).toBe(96 * MiB);
    expect(createHash('sha256').update(readFileSync(cimg).subarray(0, 64 * MiB)).digest('hex')).toBe(src);
    expect(statSync(cimg).blocks * 512).toBeGreaterThanOrEqual(32 * MiB);
    expect(record(pool, 'volumes', 'blk-clone').preallocation).toBe('fallocate');
    await d.clients.controller.DeleteVolume({ volume_id: cloned.volume.volume_id });
    await expectCode(
      d.clients.controller.CreateVolume({ name: 'blk-small', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(32 * MiB) }, volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } } }),
      'OUT_OF_RANGE',
    );
    await expectCode(
      d.clients.controller.CreateVolume({ name: 'blk-as-fs', volume_capabilities: [MOUNT_CAP], volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } } }),
      'INVALID_ARGUMENT',
    );
    await d.clients.controller.DeleteVolume({ volume_id: restored.volume.volume_id });
    await d.clients.controller.DeleteVolume({ volume_id: volume.volume_id });
    await d.clients.controller.DeleteSnapshot({ snapshot_id: snapshot.snapshot_id });
  });

  it('restores and clones a disk image into a larger volume: disk.img grows to CDI’s size for the new capacity, and on with expansion', async () => {
    const img = (name: string) => `${pool}/${name}/disk.img`;
    const { volume } = await d.clients.controller.CreateVolume({ name: 'vm1', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(64 * MiB) }, parameters: { createDiskImage: 'true' } });
    expect(statSync(img('vm1')).size).toBe(60 * MiB);
    const fd = openSync(img('vm1'), 'r+');
    writeSync(fd, randomBytes(MiB), 0, MiB, 10 * MiB);
    closeSync(fd);
    const srcHash = await sha256(img('vm1'));
    const { snapshot } = await d.clients.controller.CreateSnapshot({ name: 'vm1-snap', source_volume_id: volume.volume_id });

    // The README's vm1-restored: larger than its source, no parameters.
    const restored = await d.clients.controller.CreateVolume({
      name: 'vm1-restored',
      volume_capabilities: [MOUNT_CAP],
      capacity_range: { required_bytes: String(128 * MiB) },
      volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } },
    });
    expect(restored.volume.capacity_bytes).toBe(String(128 * MiB));
    const st = statSync(img('vm1-restored'));
    // round_down_MiB(ceil(0.945 × 128 MiB)) = 120 MiB
    expect(st.size).toBe(120 * MiB);
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([107, 107, 0o660]);
    expect(await sha256(img('vm1-restored'), 60 * MiB)).toBe(srcHash);
    expect(st.blocks * 512).toBeLessThan(8 * MiB);
    expect(record(pool, 'volumes', 'vm1-restored').diskImage).toEqual({ overhead: '0.055' });

    // A clone asking for preallocation gets the grown part allocated.
    await d.clients.controller.CreateVolume({
      name: 'vm1-clone',
      volume_capabilities: [MOUNT_CAP],
      capacity_range: { required_bytes: String(128 * MiB) },
      parameters: { preallocation: 'true' },
      volume_content_source: { volume: { volume_id: volume.volume_id } },
    });
    const cs = statSync(img('vm1-clone'));
    expect(cs.size).toBe(120 * MiB);
    expect(await sha256(img('vm1-clone'), 60 * MiB)).toBe(srcHash);
    expect(cs.blocks * 512).toBeGreaterThanOrEqual(60 * MiB);
    expect(record(pool, 'volumes', 'vm1-clone')).toMatchObject({ diskImage: { overhead: '0.055' }, preallocation: 'fallocate' });

    // Same size, preallocation asked: nothing to grow now, but expansions are allocated.
    await d.clients.controller.CreateVolume({
      name: 'vm1-same',
      volume_capabilities: [MOUNT_CAP],
      parameters: { preallocation: 'true' },
      volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } },
    });
    expect(statSync(img('vm1-same')).size).toBe(60 * MiB);

    // Expansion keeps growing them: round_down_MiB(ceil(0.945 × 256 MiB)) = 241 MiB.
    for (const name of ['vm1-restored', 'vm1-clone', 'vm1-same']) {
      const id = snapId(name);
      const target = `${dir}/pods/${name}`;
      await d.clients.node.NodePublishVolume({ volume_id: id, target_path: target, volume_capability: MOUNT_CAP });
      const res = await d.clients.controller.ControllerExpandVolume({ volume_id: id, capacity_range: { required_bytes: String(256 * MiB) }, volume_capability: MOUNT_CAP });
      expect(res.node_expansion_required).toBe(true);
      await d.clients.node.NodeExpandVolume({ volume_id: id, volume_path: target });
      const grown = statSync(`${target}/disk.img`);
      expect(grown.size, name).toBe(241 * MiB);
      if (name === 'vm1-clone') expect(grown.blocks * 512).toBeGreaterThanOrEqual(181 * MiB);
      if (name === 'vm1-same') expect(grown.blocks * 512).toBeGreaterThanOrEqual(181 * MiB);
      await d.clients.node.NodeUnpublishVolume({ volume_id: id, target_path: target });
      await d.clients.controller.DeleteVolume({ volume_id: id });
    }
    await d.clients.controller.DeleteSnapshot({ snapshot_id: snapshot.snapshot_id });
    await d.clients.controller.DeleteVolume({ volume_id: volume.volume_id });
  });

  it('a carried disk image follows the 1 MiB rule too, with the class’s filesystemOverhead; a refusal leaves nothing behind', async () => {
    const { volume } = await d.clients.controller.CreateVolume({ name: 'small', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(MiB) }, parameters: { createDiskImage: 'true', filesystemOverhead: '0' } });
    expect(statSync(`${pool}/small/disk.img`).size).toBe(MiB);
    const { snapshot } = await d.clients.controller.CreateSnapshot({ name: 'small-snap', source_volume_id: volume.volume_id });
    const from = { snapshot: { snapshot_id: snapshot.snapshot_id } };
    const restore = (name: string, range: Record<string, string> | null, parameters: Record<string, string> = {}) =>
      d.clients.controller.CreateVolume({ name, volume_capabilities: [MOUNT_CAP], capacity_range: range, parameters, volume_content_source: from });

    const err = await expectCode(restore('small-r0', { required_bytes: String(MiB), limit_bytes: String(MiB) }, { filesystemOverhead: '0.055' }), 'OUT_OF_RANGE');
    expect(err.details).toContain('1109604');
    expect(existsSync(`${pool}/small-r0`)).toBe(false);
    expect(existsSync(recordFile(poolLayout(pool).volumesDir, 'small-r0'))).toBe(false);
    expect(readdirSync(poolLayout(pool).tmpDir)).toEqual([]);

    // Rounded up where the range allows; the source's own overhead when the class names none.
    expect((await restore('small-r1', { required_bytes: String(MiB) }, { filesystemOverhead: '0.055' })).volume.capacity_bytes).toBe('1109604');
    expect(record(pool, 'volumes', 'small-r1').diskImage).toEqual({ overhead: '0.055' });
    expect((await restore('small-r2', null)).volume.capacity_bytes).toBe(String(MiB));
    expect(record(pool, 'volumes', 'small-r2').diskImage).toEqual({ overhead: '0' });
    // createDiskImage with a source and no size: the source's size, then the 1 MiB rule at the pool's 0.055.
    expect((await restore('small-r3', null, { createDiskImage: 'true' })).volume.capacity_bytes).toBe('1109604');
    for (const name of ['small-r1', 'small-r2', 'small-r3']) {
      expect(statSync(`${pool}/${name}/disk.img`).size, name).toBe(MiB);
      await d.clients.controller.DeleteVolume({ volume_id: snapId(name) });
    }
    await d.clients.controller.DeleteSnapshot({ snapshot_id: snapshot.snapshot_id });
    await d.clients.controller.DeleteVolume({ volume_id: volume.volume_id });
  });

  it('is idempotent by name, refuses a name taken by another source, lists with filters and pages', async () => {
    const a = await d.clients.controller.CreateVolume({ name: 'la', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(MiB) } });
    const b = await d.clients.controller.CreateVolume({ name: 'lb', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(MiB) } });
    const s1 = await d.clients.controller.CreateSnapshot({ name: 's1', source_volume_id: a.volume.volume_id });
    const s1again = await d.clients.controller.CreateSnapshot({ name: 's1', source_volume_id: a.volume.volume_id });
    expect(s1again.snapshot.snapshot_id).toBe(s1.snapshot.snapshot_id);
    expect(s1again.snapshot.creation_time).toEqual(s1.snapshot.creation_time);
    await expectCode(d.clients.controller.CreateSnapshot({ name: 's1', source_volume_id: b.volume.volume_id }), 'ALREADY_EXISTS');
    await expectCode(d.clients.controller.CreateSnapshot({ name: 'sx', source_volume_id: 'test-node:x:nope' }), 'NOT_FOUND');
    await expectCode(d.clients.controller.CreateSnapshot({ name: '../evil', source_volume_id: a.volume.volume_id }), 'INVALID_ARGUMENT');
    await d.clients.controller.CreateSnapshot({ name: 's2', source_volume_id: a.volume.volume_id });
    await d.clients.controller.CreateSnapshot({ name: 's3', source_volume_id: b.volume.volume_id });

    const bySource = await d.clients.controller.ListSnapshots({ source_volume_id: a.volume.volume_id });
    expect(bySource.entries.map((e: { snapshot: { snapshot_id: string } }) => e.snapshot.snapshot_id).sort()).toEqual([snapId('s1'), snapId('s2')]);
    const byId = await d.clients.controller.ListSnapshots({ snapshot_id: snapId('s3') });
    expect(byId.entries).toHaveLength(1);
    expect((await d.clients.controller.ListSnapshots({ snapshot_id: snapId('zz') })).entries).toHaveLength(0);

    const seen: string[] = [];
    let token = '';
    do {
      const page = await d.clients.controller.ListSnapshots({ max_entries: 2, starting_token: token });
      expect(page.entries.length).toBeLessThanOrEqual(2);
      seen.push(...page.entries.map((e: { snapshot: { snapshot_id: string } }) => e.snapshot.snapshot_id));
      token = page.next_token;
    } while (token);
    expect(seen).toEqual([snapId('s1'), snapId('s2'), snapId('s3')]);
    await expectCode(d.clients.controller.ListSnapshots({ starting_token: 'bogus' }), 'ABORTED');

    for (const s of ['s1', 's2', 's3']) await d.clients.controller.DeleteSnapshot({ snapshot_id: snapId(s) });
    await d.clients.controller.DeleteSnapshot({ snapshot_id: snapId('s1') });
    expect((await d.clients.controller.ListSnapshots({})).entries).toHaveLength(0);
    for (const v of [a, b]) await d.clients.controller.DeleteVolume({ volume_id: v.volume.volume_id });
  });

  it('keeps snapshots across a restart', async () => {
    const a = await d.clients.controller.CreateVolume({ name: 'keep', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(MiB) } });
    const s = await d.clients.controller.CreateSnapshot({ name: 'kept', source_volume_id: a.volume.volume_id });
    await d.stop();
    d = await startDriver({ dir, args: ['--pool', `x=${pool}:device=${loop.device}`] });
    const list = await d.clients.controller.ListSnapshots({ snapshot_id: s.snapshot.snapshot_id });
    expect(list.entries[0].snapshot).toEqual(s.snapshot);
    await d.clients.controller.DeleteSnapshot({ snapshot_id: s.snapshot.snapshot_id });
    await d.clients.controller.DeleteVolume({ volume_id: a.volume.volume_id });
  });
});

describe('snapshots on a pool without reflink (ext4)', () => {
  let dir: string;
  let d: DriverProcess;
  beforeAll(async () => {
    dir = scratchDir('snap-ext4');
    mkdirSync(`${dir}/pool`);
    d = await startDriver({ dir, args: ['--pool', `e=${dir}/pool`] });
  });
  afterAll(async () => {
    await d?.stop();
    await cleanupDir(dir);
  });

  it('falls back to a sparse copy that still matches', async () => {
    const { volume } = await d.clients.controller.CreateVolume({ name: 'v', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(GiB) }, parameters: { createDiskImage: 'true' } });
    const img = `${dir}/pool/v/disk.img`;
    const fd = openSync(img, 'r+');
    writeSync(fd, randomBytes(MiB), 0, MiB, 100 * MiB);
    closeSync(fd);
    const { snapshot } = await d.clients.controller.CreateSnapshot({ name: 'vs', source_volume_id: volume.volume_id });
    expect(record(`${dir}/pool`, 'snapshot-records', 'vs').method).toBe('copy');
    const snapImg = diskImagePath(path.join(dir, 'pool', snapshotDataDir('vs')));
    expect(await sha256(snapImg)).toBe(await sha256(img));
    // Sparse: a ~967 MiB image with 1 MiB of data stays small.
    expect(statSync(snapImg).blocks * 512).toBeLessThan(8 * MiB);
    expect([statSync(snapImg).uid, statSync(snapImg).mode & 0o777]).toEqual([107, 0o660]);
    const r = await d.clients.controller.CreateVolume({ name: 'r', volume_capabilities: [MOUNT_CAP], volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } } });
    expect(record(`${dir}/pool`, 'volumes', 'r').contentSource).toEqual({ kind: 'snapshot', id: snapshot.snapshot_id, method: 'copy' });
    expect(record(`${dir}/pool`, 'volumes', 'r').diskImage).toEqual({ overhead: '0.055' });
    expect(await sha256(`${dir}/pool/r/disk.img`)).toBe(await sha256(img));
    await d.clients.controller.DeleteVolume({ volume_id: r.volume.volume_id });
    await d.clients.controller.DeleteSnapshot({ snapshot_id: snapshot.snapshot_id });
    await d.clients.controller.DeleteVolume({ volume_id: volume.volume_id });
  });
});
