// Hostile conditions around a running daemon: the pool's filesystem running out of space mid-create,
// the pool directory vanishing and coming back, no free loop device, oversized requests, and 100
// identical calls at once.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_CAP, MOUNT_CAP, cleanupDir, readVolumeRecord, scratchDir, startDriver, type DriverProcess, type Msg } from '../helpers/driver.js';
import { grpcCode, grpcDetails, leftovers, listLoops, mountsAt, realTool, waitFor, withPathPrefix, writeFakeTools } from '../helpers/faults.js';
import { makeLoopDevice, unmountAll, type TestLoop } from '../helpers/loopdev.js';
import { META_DIR, blockImagePath, diskImagePath, poolLayout, recordFile, snapshotDataDir } from '../../src/format/layout.js';

const MiB = 1024 * 1024;

/** The call's gRPC outcome: 'OK' or the status name, with the details. */
async function outcome(p: Promise<unknown>): Promise<{ code: string; details: string }> {
  try {
    await p;
    return { code: 'OK', details: '' };
  } catch (err) {
    return { code: grpcCode(err), details: grpcDetails(err) };
  }
}

function alive(d: DriverProcess): boolean {
  return d.child.exitCode === null && d.child.signalCode === null;
}

async function probeReady(d: DriverProcess): Promise<boolean> {
  return (await d.clients.identity.Probe({})).ready?.value === true;
}

async function listedIds(d: DriverProcess): Promise<string[]> {
  const res = await d.clients.controller.ListVolumes({});
  return (res.entries as Msg[]).map((e) => e.volume.volume_id as string);
}

function fileSha(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function writeRandom(file: string, bytes: number): void {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(MiB);
  try {
    for (let done = 0; done < bytes; done += MiB) {
      for (let i = 0; i < MiB; i += 4) chunk.writeUInt32LE((Math.random() * 0x1_0000_0000) >>> 0, i);
      writeSync(fd, chunk, 0, Math.min(MiB, bytes - done));
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------------

describe('ENOSPC from the pool filesystem in the middle of a create', () => {
  // A 64 MiB ext4 (no root reserve, no reflink, no quotas) holds the pool in a subdirectory, so a
  // filler file can take the filesystem's space without being an entry of the pool. The capacity check
  // reads free space fresh on every call, so a stale cache cannot be used to get past it: instead a
  // `fallocate` wrapper first on the daemon's PATH fills the filesystem right before running the real
  // fallocate, once, when a flag file exists. The ENOSPC itself comes from the real tool on the real
  // filesystem. Copies (clone, snapshot) get theirs from a source volume holding more data than its
  // capacity, which an ext4 pool without quotas does not prevent.
  let dir: string;
  let loop: TestLoop;
  let fs: string;
  let pool: string;
  let flag: string;
  let filler: string;
  let d: DriverProcess;
  const L = () => poolLayout(pool);
  const freeBytes = () => Number(execFileSync('df', ['--output=avail', '-B1', fs]).toString().trim().split('\n').pop());
  /** Fill the filesystem behind the driver's back, leaving `leave` bytes. */
  const fill = (leave: number) => {
    const n = freeBytes() - leave;
    if (n > 0) execFileSync(realTool('fallocate'), ['-l', String(n), filler]);
  };
  const unfill = () => rmSync(filler, { force: true });

  beforeAll(async () => {
    dir = scratchDir('faults-enospc');
    loop = makeLoopDevice(path.join(dir, 'ext4.img'), 64);
    execFileSync('mkfs.ext4', ['-q', '-m', '0', '-E', 'nodiscard', loop.device], { stdio: 'ignore' });
    fs = path.join(dir, 'fs');
    mkdirSync(fs);
    execFileSync('mount', [loop.device, fs]);
    pool = path.join(fs, 'pool');
    mkdirSync(pool);
    flag = path.join(dir, 'fill-before-fallocate');
    filler = path.join(fs, 'filler');
    const real = realTool('fallocate');
    const bin = writeFakeTools(path.join(dir, 'bin'), {
      fallocate: [
        '#!/bin/sh',
        `if [ -e '${flag}' ]; then`,
        `  rm -f '${flag}'`,
        `  avail=$(df --output=avail -B1 '${fs}' | tail -n 1 | tr -d ' ')`,
        '  n=$((avail - 65536))',
        `  [ "$n" -gt 0 ] && '${real}' -l "$n" '${filler}'`,
        'fi',
        `exec '${real}' "$@"`,
        '',
      ].join('\n'),
    });
    d = await withPathPrefix(bin, () => startDriver({ dir, args: ['--pool', `e=${pool}`] }));
  });

  afterAll(async () => {
    await d?.stop();
    await cleanupDir(path.join(dir, 'pods')).catch(() => {});
    unmountAll(fs);
    loop?.detach();
    await cleanupDir(dir);
  });

  /** After a failed create of `name`, nothing of it may be left. */
  async function nothingLeft(name: string, kind: 'volume' | 'snapshot'): Promise<void> {
    expect.soft(readdirSync(L().tmpDir), '.hpp/tmp after the failed create').toEqual([]);
    if (kind === 'volume') {
      expect.soft(existsSync(recordFile(L().volumesDir, name)), 'record of the failed volume').toBe(false);
      expect.soft(existsSync(path.join(pool, name)), 'directory of the failed volume').toBe(false);
      expect.soft(existsSync(path.join(pool, blockImagePath(name))), 'image of the failed volume').toBe(false);
      expect.soft(await listedIds(d)).not.toContain(`test-node:e:${name}`);
    } else {
      expect.soft(existsSync(recordFile(L().snapshotRecordsDir, name)), 'record of the failed snapshot').toBe(false);
      expect.soft(existsSync(path.join(pool, snapshotDataDir(name))), 'data of the failed snapshot').toBe(false);
      const snaps = await d.clients.controller.ListSnapshots({});
      expect.soft((snaps.entries as Msg[]).map((e) => e.snapshot.snapshot_id)).not.toContain(`test-node:e:${name}`);
    }
    expect(alive(d)).toBe(true);
  }

  it('preallocated disk.img: RESOURCE_EXHAUSTED, nothing left behind, the retry succeeds once space is freed', async () => {
    const req = { name: 'img', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(16 * MiB) }, parameters: { createDiskImage: 'true', preallocation: 'true' } };
    execFileSync('touch', [flag]);
    try {
      const r = await outcome(d.clients.controller.CreateVolume(req));
      expect(existsSync(flag), 'the fallocate wrapper ran').toBe(false);
      expect.soft(r.code, r.details).toBe('RESOURCE_EXHAUSTED');
      expect.soft(r.details).toMatch(/No space left on device|ENOSPC/);
      await nothingLeft('img', 'volume');
    } finally {
      rmSync(flag, { force: true });
      unfill();
    }
    const res = await d.clients.controller.CreateVolume(req);
    expect(res.volume.volume_id).toBe('test-node:e:img');
    expect(statSync(diskImagePath(path.join(pool, 'img'))).size).toBe(15 * MiB);
    expect(JSON.parse(readFileSync(recordFile(L().volumesDir, 'img'), 'utf8')).preallocation).toBe('fallocate');
    expect(readdirSync(L().tmpDir)).toEqual([]);
    await d.clients.controller.DeleteVolume({ volume_id: res.volume.volume_id });
  });

  it('preallocated block image: RESOURCE_EXHAUSTED, nothing left behind, the retry succeeds once space is freed', async () => {
    const req = { name: 'blk', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(16 * MiB) }, parameters: { preallocation: 'true' } };
    execFileSync('touch', [flag]);
    try {
      const r = await outcome(d.clients.controller.CreateVolume(req));
      expect(existsSync(flag), 'the fallocate wrapper ran').toBe(false);
      expect.soft(r.code, r.details).toBe('RESOURCE_EXHAUSTED');
      expect.soft(r.details).toMatch(/No space left on device|ENOSPC/);
      await nothingLeft('blk', 'volume');
    } finally {
      rmSync(flag, { force: true });
      unfill();
    }
    const res = await d.clients.controller.CreateVolume(req);
    expect(statSync(path.join(pool, blockImagePath('blk'))).size).toBe(16 * MiB);
    expect(statSync(path.join(pool, blockImagePath('blk'))).blocks * 512).toBeGreaterThanOrEqual(16 * MiB);
    await d.clients.controller.DeleteVolume({ volume_id: res.volume.volume_id });
  });

  describe('copies of a volume that holds more than its capacity', () => {
    let src: string;
    let sha: string;
    beforeAll(async () => {
      const res = await d.clients.controller.CreateVolume({ name: 'src', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(MiB) } });
      src = res.volume.volume_id;
      const target = path.join(dir, 'pods', 'src', 'mount');
      mkdirSync(path.dirname(target), { recursive: true });
      await d.clients.node.NodePublishVolume({ volume_id: src, target_path: target, volume_capability: MOUNT_CAP });
      writeRandom(path.join(target, 'data.bin'), 20 * MiB);
      sha = fileSha(path.join(target, 'data.bin'));
      await d.clients.node.NodeUnpublishVolume({ volume_id: src, target_path: target });
    });

    it('clone (cp): RESOURCE_EXHAUSTED, nothing left behind, the retry succeeds once space is freed', async () => {
      const req = { name: 'cl', volume_capabilities: [MOUNT_CAP], volume_content_source: { volume: { volume_id: src } } };
      fill(6 * MiB);
      try {
        const r = await outcome(d.clients.controller.CreateVolume(req));
        expect.soft(r.code, r.details).toBe('RESOURCE_EXHAUSTED');
        expect.soft(r.details).toMatch(/No space left on device|ENOSPC/);
        await nothingLeft('cl', 'volume');
      } finally {
        unfill();
      }
      const res = await d.clients.controller.CreateVolume(req);
      expect(fileSha(path.join(pool, 'cl', 'data.bin'))).toBe(sha);
      await d.clients.controller.DeleteVolume({ volume_id: res.volume.volume_id });
      await waitFor('trash emptied', () => readdirSync(L().trashDir).length === 0);
    });

    it('snapshot (cp): RESOURCE_EXHAUSTED, nothing left behind, the retry succeeds once space is freed', async () => {
      const req = { name: 'sn', source_volume_id: src };
      fill(6 * MiB);
      try {
        const r = await outcome(d.clients.controller.CreateSnapshot(req));
        expect.soft(r.code, r.details).toBe('RESOURCE_EXHAUSTED');
        expect.soft(r.details).toMatch(/No space left on device|ENOSPC/);
        await nothingLeft('sn', 'snapshot');
      } finally {
        unfill();
      }
      const res = await d.clients.controller.CreateSnapshot(req);
      expect(fileSha(path.join(pool, snapshotDataDir('sn'), 'data.bin'))).toBe(sha);
      await d.clients.controller.DeleteSnapshot({ snapshot_id: res.snapshot.snapshot_id });
    });
  });
});

// ---------------------------------------------------------------------------------------------------

describe('the pool directory disappears under a running daemon', () => {
  let dir: string;
  let pool: string;
  let d: DriverProcess;
  const create = (name: string) => d.clients.controller.CreateVolume({ name, volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(MiB) } });

  beforeAll(async () => {
    dir = scratchDir('faults-poolgone');
    pool = path.join(dir, 'pool');
    mkdirSync(pool);
    d = await startDriver({ dir, args: ['--pool', `p=${pool}`] });
  });

  afterAll(async () => {
    await d?.stop();
    await cleanupDir(dir);
  });

  /** While the pool is away: not ready, creates refused clearly, the pool not re-created, daemon up. */
  async function whileGone(name: string): Promise<void> {
    expect(await probeReady(d)).toBe(false);
    const r = await outcome(create(name));
    expect.soft(['UNAVAILABLE', 'FAILED_PRECONDITION'], `CreateVolume while the pool is gone: ${r.code} ${r.details}`).toContain(r.code);
    expect.soft(r.details).toMatch(new RegExp(`${pool.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}|pool p`));
    expect.soft(existsSync(pool), 'the driver re-created the missing pool directory').toBe(false);
    // Other calls still get answers.
    await d.clients.controller.ListVolumes({});
    await d.clients.controller.GetCapacity({});
    expect(alive(d)).toBe(true);
    expect.soft(await probeReady(d), 'Probe after the refused CreateVolume').toBe(false);
  }

  it('renamed away: Probe not ready, CreateVolume refused, no crash; renamed back: ready, volumes and data intact', async () => {
    const keep = await create('keep');
    writeFileSync(path.join(pool, 'keep', 'data'), 'still here');
    expect(await probeReady(d)).toBe(true);
    renameSync(pool, `${pool}.away`);
    try {
      await whileGone('while-away');
    } finally {
      if (existsSync(pool)) rmSync(pool, { recursive: true, force: true });
      renameSync(`${pool}.away`, pool);
    }
    await waitFor('Probe ready again', () => probeReady(d), 10_000, 100);
    expect(await listedIds(d)).toContain(keep.volume.volume_id);
    expect(readFileSync(path.join(pool, 'keep', 'data'), 'utf8')).toBe('still here');
    const again = await create('after-return');
    expect(existsSync(path.join(pool, 'after-return'))).toBe(true);
    for (const id of [again.volume.volume_id, keep.volume.volume_id]) await d.clients.controller.DeleteVolume({ volume_id: id });
  });

  it('removed (rm -rf) and re-created empty: not ready meanwhile, no crash; ready again and CreateVolume works', async () => {
    rmSync(pool, { recursive: true, force: true });
    try {
      await whileGone('while-removed');
    } finally {
      rmSync(pool, { recursive: true, force: true });
      mkdirSync(pool);
    }
    await waitFor('Probe ready again', () => probeReady(d), 10_000, 100);
    const r = await outcome(create('after-recreate'));
    expect(r.code, r.details).toBe('OK');
    expect(existsSync(path.join(pool, 'after-recreate'))).toBe(true);
    expect(alive(d)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------

describe('no free loop device', () => {
  // Exhausting the kernel's loop devices would break everything else on the machine (and other test
  // files running in parallel), so the fault is injected: a `losetup` first on the daemon's PATH fails
  // like the real one does when no device is free, whenever it is asked to find one; every other use
  // (listing, detaching) goes to the real tool.
  let dir: string;
  let pool: string;
  let d: DriverProcess;

  beforeAll(async () => {
    dir = scratchDir('faults-noloop');
    pool = path.join(dir, 'pool');
    mkdirSync(pool);
    const real = realTool('losetup');
    const bin = writeFakeTools(path.join(dir, 'bin'), {
      losetup: [
        '#!/bin/sh',
        'for a in "$@"; do',
        '  case "$a" in',
        '    -f|--find|-f*|--find=*) echo "losetup: cannot find an unused loop device" >&2; exit 1 ;;',
        '  esac',
        'done',
        `exec '${real}' "$@"`,
        '',
      ].join('\n'),
    });
    d = await withPathPrefix(bin, () => startDriver({ dir, args: ['--pool', `p=${pool}`] }));
  });

  afterAll(async () => {
    await d?.stop();
    await cleanupDir(dir);
  });

  it(`NodePublish of a block volume is RESOURCE_EXHAUSTED with the tool's message; nothing mounted, nothing recorded${existsSync('/dev/loop-control') ? '' : ' (no /dev/loop-control here)'}`, async () => {
    const { volume } = await d.clients.controller.CreateVolume({ name: 'blk', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(8 * MiB) } });
    const target = path.join(dir, 'pods', 'p1', 'dev');
    mkdirSync(path.dirname(target), { recursive: true });
    const r = await outcome(d.clients.node.NodePublishVolume({ volume_id: volume.volume_id, target_path: target, volume_capability: BLOCK_CAP }));
    expect(r.code, r.details).toBe('RESOURCE_EXHAUSTED');
    expect(r.details).toContain('cannot find an unused loop device');
    expect(mountsAt(target)).toEqual([]);
    expect(readVolumeRecord(pool, 'blk')!.publications).toEqual({});
    expect(listLoops().filter((l) => l.backFile === path.join(pool, blockImagePath('blk')))).toEqual([]);
    expect(alive(d)).toBe(true);
    expect(await probeReady(d)).toBe(true);
    // The retry keeps failing the same way, and unpublishing the target that never got published is OK.
    expect((await outcome(d.clients.node.NodePublishVolume({ volume_id: volume.volume_id, target_path: target, volume_capability: BLOCK_CAP }))).code).toBe('RESOURCE_EXHAUSTED');
    await d.clients.node.NodeUnpublishVolume({ volume_id: volume.volume_id, target_path: target });
    // Filesystem volumes need no loop device and still publish.
    const fsVol = await d.clients.controller.CreateVolume({ name: 'fsv', volume_capabilities: [MOUNT_CAP] });
    const t2 = path.join(dir, 'pods', 'p2', 'mount');
    await d.clients.node.NodePublishVolume({ volume_id: fsVol.volume.volume_id, target_path: t2, volume_capability: MOUNT_CAP });
    expect(mountsAt(t2)).toHaveLength(1);
    await d.clients.node.NodeUnpublishVolume({ volume_id: fsVol.volume.volume_id, target_path: t2 });
    await d.clients.controller.DeleteVolume({ volume_id: fsVol.volume.volume_id });
    await d.clients.controller.DeleteVolume({ volume_id: volume.volume_id });
  });
});

// ---------------------------------------------------------------------------------------------------

describe('oversized requests and 100 identical calls at once', () => {
  let dir: string;
  let pool: string;
  let d: DriverProcess;

  beforeAll(async () => {
    dir = scratchDir('faults-load');
    pool = path.join(dir, 'pool');
    mkdirSync(pool);
    d = await startDriver({ dir, args: ['--pool', `p=${pool}`] });
  });

  afterAll(async () => {
    await d?.stop();
    await cleanupDir(dir);
    const left = leftovers(dir);
    if (left.length) throw new Error(`left behind: ${left.join('; ')}`);
  });

  it('a 5 MiB request is RESOURCE_EXHAUSTED from gRPC and the daemon keeps serving', async () => {
    const big = 'a'.repeat(5 * MiB);
    const byName = await outcome(d.clients.controller.CreateVolume({ name: big, volume_capabilities: [MOUNT_CAP] }));
    expect(byName.code, byName.details).toBe('RESOURCE_EXHAUSTED');
    const byParams = await outcome(d.clients.controller.CreateVolume({ name: 'p', volume_capabilities: [MOUNT_CAP], parameters: { storagePool: big } }));
    expect(byParams.code, byParams.details).toBe('RESOURCE_EXHAUSTED');
    const manyKeys = Object.fromEntries(Array.from({ length: 60_000 }, (_, i) => [`csi.storage.k8s.io/k${i}`, 'v'.repeat(80)]));
    const byMap = await outcome(d.clients.node.NodePublishVolume({ volume_id: 'x', target_path: '/x', volume_context: manyKeys }));
    expect(byMap.code, byMap.details).toBe('RESOURCE_EXHAUSTED');
    expect(alive(d)).toBe(true);
    expect(await probeReady(d)).toBe(true);
    const ok = await d.clients.controller.CreateVolume({ name: 'after-big', volume_capabilities: [MOUNT_CAP] });
    expect(existsSync(path.join(pool, 'after-big'))).toBe(true);
    expect(readdirSync(pool).sort()).toEqual([META_DIR, 'after-big']);
    await d.clients.controller.DeleteVolume({ volume_id: ok.volume.volume_id });
  });

  it('100 concurrent identical CreateVolume: all OK with one id, one directory, one record', async () => {
    const req = { name: 'same', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(4 * MiB) }, parameters: { createDiskImage: 'true' } };
    const ids: string[] = [];
    const results = await Promise.all(
      Array.from({ length: 100 }, () => outcome(d.clients.controller.CreateVolume(req).then((r) => ids.push(r.volume.volume_id as string)))),
    );
    expect(results.filter((r) => r.code !== 'OK')).toEqual([]);
    expect(new Set(ids)).toEqual(new Set(['test-node:p:same']));
    expect(readdirSync(pool).filter((e) => e !== META_DIR)).toEqual(['same']);
    expect(readdirSync(poolLayout(pool).volumesDir)).toEqual(['same.json']);
    expect(readdirSync(poolLayout(pool).tmpDir)).toEqual([]);
    expect((await listedIds(d)).filter((id) => id.endsWith(':same'))).toHaveLength(1);
  });

  it('100 concurrent identical NodePublish: all OK, one mount, one recorded publication (filesystem and block)', async () => {
    const fsTarget = path.join(dir, 'pods', 'fs', 'mount');
    const fsRes = await Promise.all(
      Array.from({ length: 100 }, () => outcome(d.clients.node.NodePublishVolume({ volume_id: 'test-node:p:same', target_path: fsTarget, volume_capability: MOUNT_CAP }))),
    );
    expect(fsRes.filter((r) => r.code !== 'OK')).toEqual([]);
    expect(mountsAt(fsTarget)).toHaveLength(1);
    expect(Object.keys(readVolumeRecord(pool, 'same')!.publications)).toEqual([fsTarget]);

    await d.clients.controller.CreateVolume({ name: 'blk', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(8 * MiB) } });
    const blkTarget = path.join(dir, 'pods', 'blk', 'dev');
    const blkRes = await Promise.all(
      Array.from({ length: 100 }, () => outcome(d.clients.node.NodePublishVolume({ volume_id: 'test-node:p:blk', target_path: blkTarget, volume_capability: BLOCK_CAP }))),
    );
    expect(blkRes.filter((r) => r.code !== 'OK')).toEqual([]);
    expect(mountsAt(blkTarget)).toHaveLength(1);
    expect(listLoops().filter((l) => l.backFile === path.join(pool, blockImagePath('blk')))).toHaveLength(1);
    expect(Object.keys(readVolumeRecord(pool, 'blk')!.publications)).toEqual([blkTarget]);

    // And 100 identical unpublishes: all OK, nothing left.
    const un = await Promise.all([
      ...Array.from({ length: 100 }, () => outcome(d.clients.node.NodeUnpublishVolume({ volume_id: 'test-node:p:same', target_path: fsTarget }))),
      ...Array.from({ length: 100 }, () => outcome(d.clients.node.NodeUnpublishVolume({ volume_id: 'test-node:p:blk', target_path: blkTarget }))),
    ]);
    expect(un.filter((r) => r.code !== 'OK')).toEqual([]);
    expect([...mountsAt(fsTarget), ...mountsAt(blkTarget)]).toEqual([]);
    expect(listLoops().filter((l) => l.backFile.startsWith(`${pool}/`))).toEqual([]);
    for (const id of ['test-node:p:same', 'test-node:p:blk']) await d.clients.controller.DeleteVolume({ volume_id: id });
  });
});
