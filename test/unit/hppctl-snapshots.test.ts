/** hppctl snapshots, and the builds in progress hppctl volumes shows: a hand-made pool, no daemon, no mounts. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../src/admin/main.js';
import { blockImagePath, diskImagePath, poolLayout, recordFile, snapshotBuildPath, snapshotDataDir, volumeBuildPath } from '../../src/format/layout.js';
import { formatRecord, type SnapshotRecord } from '../../src/format/records.js';
import { ProcessLock } from '../../src/system/flock.js';

const MiB = 1024 * 1024;

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, {}, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

function snapshot(name: string, extra: Partial<SnapshotRecord> = {}): string {
  return formatRecord({
    version: 1,
    id: `n1:p:${name}`,
    name,
    pool: 'p',
    node: 'n1',
    sourceVolumeId: 'n1:p:vm1',
    mode: 'filesystem',
    data: snapshotDataDir(name),
    sizeBytes: String(10 * MiB),
    createdAt: '2026-12-01T10:00:00.000Z',
    method: 'reflink',
    state: 'ready',
    ...extra,
  });
}

describe('hppctl snapshots and builds in progress', () => {
  let dir: string;
  let root: string;
  const L = () => poolLayout(root);
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'hppctl-snapshots-'));
    root = `${dir}/pool`;
    for (const d of [L().volumesDir, L().blockDir, L().tmpDir, L().trashDir, L().snapshotRecordsDir, L().snapshotsDir]) mkdirSync(d, { recursive: true });
    const snap = (name: string, text: string) => writeFileSync(recordFile(L().snapshotRecordsDir, name), text);
    snap('s-fs', snapshot('s-fs', { diskImage: { overhead: '0.055' } }));
    mkdirSync(path.join(root, snapshotDataDir('s-fs')));
    snap('s-blk', snapshot('s-blk', { mode: 'block', method: 'copy', sourceVolumeId: 'n1:p:blk', sizeBytes: String(4 * MiB) }));
    // Committed, its data still in tmp/: the daemon moves it on its next start.
    writeFileSync(snapshotBuildPath(L(), 's-blk'), Buffer.alloc(4096));
    writeFileSync(path.join(L().snapshotRecordsDir, 's-gone.deleting'), snapshot('s-gone'));
    snap('s-bad', '{"version": 1, "name": "s-bad"');
    // Builds without a record: a snapshot being taken, a Filesystem volume with its disk.img being
    // preallocated, a Block volume.
    mkdirSync(snapshotBuildPath(L(), 's-new'));
    mkdirSync(volumeBuildPath(L(), 'vm-new'));
    writeFileSync(diskImagePath(volumeBuildPath(L(), 'vm-new')), Buffer.alloc(2 * MiB, 1));
    writeFileSync(volumeBuildPath(L(), 'blk-new'), Buffer.alloc(MiB, 1));
    void blockImagePath;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('snapshots --json: each record with its source, size, method, state and creation; bad records named', async () => {
    const r = await run(['--pool', `p=${root}`, 'snapshots', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.out);
    const byName = Object.fromEntries((out.snapshots as Array<{ name: string }>).map((s) => [s.name, s]));
    expect(Object.keys(byName).sort()).toEqual(['s-blk', 's-fs', 's-gone']);
    expect(byName['s-fs']).toEqual({
      id: 'n1:p:s-fs',
      pool: 'p',
      name: 's-fs',
      sourceVolumeId: 'n1:p:vm1',
      mode: 'filesystem',
      sizeBytes: String(10 * MiB),
      origin: 'driver',
      method: 'reflink',
      state: 'ready',
      data: 'present',
      dataPath: path.join(root, snapshotDataDir('s-fs')),
      diskImage: true,
      createdAt: '2026-12-01T10:00:00.000Z',
    });
    expect(byName['s-blk']).toMatchObject({ mode: 'block', method: 'copy', data: 'building', sourceVolumeId: 'n1:p:blk' });
    expect(byName['s-gone']).toMatchObject({ state: 'deleting' });
    expect(out.badRecords).toEqual([expect.objectContaining({ pool: 'p', file: recordFile(L().snapshotRecordsDir, 's-bad') })]);
    expect(out.builds).toEqual([expect.objectContaining({ kind: 'snapshot', name: 's-new', mode: 'filesystem', state: 'interrupted' })]);
  });

  it('snapshots as a table', async () => {
    const r = await run(['--pool', `p=${root}`, 'snapshots']);
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^SNAPSHOT\s+POOL\s+SOURCE\s+MODE\s+SIZE\s+METHOD\s+STATE\s+CREATED$/);
    expect(lines.find((l) => l.startsWith('n1:p:s-fs '))).toMatch(/n1:p:s-fs\s+p\s+n1:p:vm1\s+filesystem\s+10 MiB\s+reflink\s+ready\s+2026-12-01T10:00:00.000Z/);
    expect(lines.find((l) => l.startsWith('n1:p:s-blk '))).toMatch(/copy\s+being created/);
    expect(lines.find((l) => l.startsWith('n1:p:s-gone '))).toMatch(/deleting/);
    expect(lines.find((l) => l.startsWith('s-new '))).toMatch(/interrupted/);
    expect(r.err).toContain(`unreadable snapshot record ${recordFile(L().snapshotRecordsDir, 's-bad')}`);
  });

  it('volumes: builds in tmp/ without a record, with their size so far; "building" while a daemon serves the pool', async () => {
    const idle = JSON.parse((await run(['--pool', `p=${root}`, 'volumes', '--json'])).out);
    expect(idle.volumes).toEqual([]);
    expect(idle.builds.map((b: { name: string; state: string }) => `${b.name} ${b.state}`)).toEqual(['blk-new interrupted', 'vm-new interrupted']);
    // The daemon's lock held (here by this process): a build in progress.
    const lock = new ProcessLock(L().lockFile);
    expect(await lock.acquire()).toBe(true);
    try {
      const r = await run(['--pool', `p=${root}`, 'volumes', '--json']);
      const builds = Object.fromEntries((JSON.parse(r.out).builds as Array<{ name: string }>).map((b) => [b.name, b]));
      expect(builds['vm-new']).toMatchObject({ pool: 'p', kind: 'volume', mode: 'filesystem', state: 'building', diskImage: true, apparentBytes: String(2 * MiB) });
      expect(Number((builds['vm-new'] as unknown as { allocatedBytes: string }).allocatedBytes)).toBeGreaterThanOrEqual(2 * MiB);
      expect(builds['blk-new']).toMatchObject({ mode: 'block', state: 'building', apparentBytes: String(MiB) });
      const table = await run(['--pool', `p=${root}`, 'volumes']);
      expect(table.out).toMatch(/^vm-new\s+p\s+filesystem\s+2 MiB\s+2(\.\d)? MiB\s+building\s+-\s+-\s+yes\s+-$/m);
      expect(table.out).toMatch(/^blk-new\s+p\s+block\s+1 MiB\s+1(\.\d)? MiB\s+building/m);
    } finally {
      await lock.release();
    }
  });

  it('a build whose record exists is the record\'s, not a build row', async () => {
    writeFileSync(
      recordFile(L().volumesDir, 'vm-new'),
      formatRecord({ version: 1, id: 'n1:p:vm-new', name: 'vm-new', pool: 'p', node: 'n1', mode: 'filesystem', data: 'vm-new', capacityBytes: String(4 * MiB), parameters: {}, createdAt: '2026-12-01T10:00:00Z', state: 'ready' }),
    );
    const out = JSON.parse((await run(['--pool', `p=${root}`, 'volumes', '--json'])).out);
    expect(out.volumes.map((v: { name: string; data: string }) => `${v.name} ${v.data}`)).toEqual(['vm-new building']);
    expect(out.builds.map((b: { name: string }) => b.name)).toEqual(['blk-new']);
  });
});
