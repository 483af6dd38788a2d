import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { META_DIR, blockImagePath, diskImagePath, poolLayout, recordFile } from '../../src/format/layout.js';
import { formatRecord, type StoredVolumeRecord, type VolumeMode } from '../../src/format/records.js';
import { main } from '../../src/admin/main.js';

async function run(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, env, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

function record(name: string, mode: VolumeMode, data: string, extra: Partial<StoredVolumeRecord> = {}): string {
  return formatRecord({
    version: 1,
    id: `n1:p:${name}`,
    name,
    pool: 'p',
    node: 'n1',
    mode,
    data,
    capacityBytes: String(16 * 1024 * 1024),
    parameters: {},
    createdAt: '2024-01-01T00:00:00Z',
    state: 'ready',
    publications: {},
    ...extra,
  });
}

describe('hppctl main (a hand-made pool, no daemon, no mounts)', () => {
  let dir: string;
  let root: string;
  const L = () => poolLayout(root);
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'hppctl-main-'));
    root = `${dir}/pool`;
    for (const d of [L().volumesDir, L().blockDir, L().tmpDir, L().trashDir, L().snapshotRecordsDir]) mkdirSync(d, { recursive: true });
    const vol = (name: string, text: string) => writeFileSync(recordFile(L().volumesDir, name), text);
    vol('vol1', record('vol1', 'filesystem', 'vol1', { diskImage: { overhead: '0.055' }, preallocation: 'fallocate', pvc: { namespace: 'vms', name: 'vm1-disk' } }));
    mkdirSync(`${root}/vol1`);
    writeFileSync(diskImagePath(`${root}/vol1`), Buffer.alloc(40960, 1));
    vol('gone', record('gone', 'filesystem', 'gone'));
    vol('building', record('building', 'filesystem', 'building'));
    mkdirSync(`${L().tmpDir}/building`);
    vol('blk', record('blk', 'block', blockImagePath('blk'), { publications: { '/nonexistent/target': { readOnly: false, accessMode: 'SINGLE_NODE_WRITER', mountFlags: [], device: '/dev/loop99' } } }));
    writeFileSync(`${L().blockDir}/blk.img`, Buffer.alloc(8192, 1));
    // An unreadable record: reported, and what it may own is kept.
    // Unreadable records: reported, and what they may own is kept (their data when it can be read,
    // else the default places of their name).
    vol('broken', '{"version": 1, "name": "broken", "pool": "elsewhere", "data": "broken-data"}');
    mkdirSync(`${root}/broken-data`);
    vol('garbled', '{"version": 1, "name": "garb');
    mkdirSync(`${root}/garbled`);
    writeFileSync(`${L().blockDir}/garbled.img`, '');
    // A snapshot being built belongs to the daemon.
    writeFileSync(`${L().snapshotRecordsDir}/snap1.json`, '{}');
    mkdirSync(`${L().tmpDir}/@snap1`);
    // Orphans.
    mkdirSync(`${root}/stray`);
    writeFileSync(`${L().blockDir}/lost.img`, Buffer.alloc(4096));
    mkdirSync(`${L().tmpDir}/uncommitted`);
    writeFileSync(`${L().trashDir}/gone.1.abcdef`, 'x');
    writeFileSync(`${L().volumesDir}/.vol1.json.tmp-1-deadbeef`, '{');
    // Not orphans: files and symlinks in the root are nobody's business.
    writeFileSync(`${root}/README`, 'x');
    mkdirSync(`${dir}/elsewhere`);
    symlinkSync(`${dir}/elsewhere`, `${root}/link-to-dir`);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('--help, --version and usage errors', async () => {
    expect((await run(['--help'])).out).toContain('Usage: hppctl');
    expect((await run(['--version'])).out).toMatch(/^hppctl \d+\.\d+\.\d+/);
    const bad = await run(['pools']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('no storage pool configured');
    expect((await run(['--pool', `p=${root}`, 'explode'])).code).toBe(2);
  });

  it('orphans: each kind found, builds in progress and unreadable records respected', async () => {
    const r = await run(['--pool', `p=${root}`, 'orphans', '--json']);
    expect(r.code).toBe(0);
    const got = (JSON.parse(r.out).orphans as Array<{ kind: string; path: string; action: string }>).map((o) => `${o.kind} ${path.relative(root, o.path)} ${o.action}`);
    expect(got).toEqual([
      'image .hpp/block/lost.img remove',
      'tmp .hpp/tmp/uncommitted remove',
      'trash .hpp/trash/gone.1.abcdef remove',
      'temp-file .hpp/volumes/.vol1.json.tmp-1-deadbeef remove',
      'directory stray remove',
      'record .hpp/volumes/gone.json remove-record',
      'bad-record .hpp/volumes/broken.json none',
      'bad-record .hpp/volumes/garbled.json none',
    ]);
  });

  it('volumes: state, usage and publications from the records', async () => {
    const r = await run(['--pool', `p=${root}`, 'volumes', '--json']);
    const vols = Object.fromEntries((JSON.parse(r.out).volumes as Array<{ name: string }>).map((v) => [v.name, v]));
    expect(Object.keys(vols).sort()).toEqual(['blk', 'building', 'gone', 'vol1']);
    expect(vols.vol1).toMatchObject({ data: 'present', diskImage: true, diskImageOverhead: '0.055', preallocation: 'fallocate', usedFrom: 'du' });
    expect(vols.building).toMatchObject({ data: 'building', usedBytes: null });
    expect(vols.gone).toMatchObject({ data: 'missing', usedBytes: null });
    expect(vols.blk).toMatchObject({ usedFrom: 'image-allocated', publications: [{ target: '/nonexistent/target', device: '/dev/loop99', mounted: false }] });
    // The claim a volume was made for; null for one made without (an older record).
    expect(vols.vol1).toMatchObject({ pvc: { namespace: 'vms', name: 'vm1-disk' } });
    expect(vols.blk).toMatchObject({ pvc: null });
    const human = await run(['--pool', `p=${root}`, 'volumes']);
    expect(human.out).toContain('being created');
    expect(human.out).toContain('/nonexistent/target (/dev/loop99) [NOT MOUNTED]');
    const table = human.out.split('\n');
    expect(table[0]).toMatch(/^VOLUME\s+POOL\s+MODE\s+CAPACITY\s+USED\s+STATE\s+PVC\s+PREALLOC/);
    expect(table.find((l) => l.startsWith('n1:p:vol1 '))).toMatch(/\sready\s+vms\/vm1-disk\s+fallocate\s/);
    expect(table.find((l) => l.startsWith('n1:p:blk '))).toMatch(/\sready\s+-\s+none\s/);
  });

  it('gc: dry run, then removal step by step; nothing but orphans goes', async () => {
    const dry = await run(['--pool', `p=${root}`, 'gc', '--dry-run', '--json']);
    expect(JSON.parse(dry.out).summary).toEqual({ done: 0, would: 4, skipped: 4, failed: 0 });
    const first = await run(['--pool', `p=${root}`, 'gc']);
    expect(first.code).toBe(0);
    expect(first.out).toContain(`removed ${L().blockDir}/lost.img`);
    expect(first.out).toContain(`skipped: not removed without --include-directories: ${root}/stray`);
    expect(first.out).toMatch(/4 done, 4 skipped, 0 failed/);
    const second = await run(['--pool', `p=${root}`, 'gc', '--include-records', '--include-directories', '--json']);
    expect(JSON.parse(second.out).summary).toEqual({ done: 2, would: 0, skipped: 2, failed: 0 });
    expect(readdirSync(root).sort()).toEqual([META_DIR, 'README', 'broken-data', 'garbled', 'link-to-dir', 'vol1']);
    expect(readdirSync(`${L().volumesDir}`).sort()).toEqual(['blk.json', 'broken.json', 'building.json', 'garbled.json', 'vol1.json']);
    expect(readdirSync(`${L().blockDir}`).sort()).toEqual(['blk.img', 'garbled.img']);
    expect(readdirSync(`${L().tmpDir}`).sort()).toEqual(['@snap1', 'building']);
    expect(readdirSync(`${L().trashDir}`)).toEqual([]);
    expect(existsSync(`${dir}/elsewhere`)).toBe(true);
    // gc held the pool's daemon lock while it worked, and let it go.
    expect(existsSync(`${L().metaDir}/daemon.lock`)).toBe(true);
    expect(JSON.parse((await run(['--pool', `p=${root}`, 'pools', '--json'])).out).pools[0].daemonPid).toBeNull();
  });

  it('a path no daemon has used (no .hpp) is never cleaned: a wrong --pool must not cost anyone their files', async () => {
    mkdirSync(`${dir}/home/someone`, { recursive: true });
    const orphans = JSON.parse((await run(['--pool', `h=${dir}/home`, 'orphans', '--json'])).out).orphans;
    expect(orphans).toMatchObject([{ kind: 'directory', path: `${dir}/home/someone`, action: 'none' }]);
    const gc = await run(['--pool', `h=${dir}/home`, 'gc', '--include-directories', '--include-records']);
    expect(gc.code).toBe(0);
    expect(gc.out).toMatch(/0 done, 1 skipped, 0 failed/);
    expect(existsSync(`${dir}/home/someone`)).toBe(true);
  });

  it('a private directory replaced by a symlink is reported, never followed', async () => {
    rmSync(`${L().trashDir}`, { recursive: true });
    mkdirSync(`${dir}/precious`);
    writeFileSync(`${dir}/precious/file`, 'keep');
    symlinkSync(`${dir}/precious`, `${L().trashDir}`);
    const r = await run(['--pool', `p=${root}`, 'orphans', '--json']);
    expect(JSON.parse(r.out).orphans.some((o: { path: string }) => o.path.includes('trash') || o.path.includes('precious'))).toBe(false);
    expect(r.err).toContain(`${L().trashDir} is a symbolic link: not read, never followed`);
    const gc = await run(['--pool', `p=${root}`, 'gc', '--include-directories', '--include-records']);
    expect(gc.code).toBe(0);
    expect(existsSync(`${dir}/precious/file`)).toBe(true);
  });

  it('pools: a missing pool and a pool path that is a symlink', async () => {
    symlinkSync(root, `${dir}/via-link`);
    const r = await run(['--pool', `a=${dir}/via-link`, '--pool', `b=${dir}/missing`, 'pools', '--json']);
    const [a, b] = JSON.parse(r.out).pools;
    // The records name pool "p": under another name they are not this pool's (the daemon agrees).
    expect(a).toMatchObject({ name: 'a', state: 'ready', realPath: root, volumes: 0 });
    expect(a.problems).toHaveLength(6);
    expect(a.problems.filter((p: string) => p.includes('belongs to pool "p", not a'))).toHaveLength(4);
    expect(b).toMatchObject({ name: 'b', state: 'missing', reason: `${dir}/missing does not exist` });
  });
});
