import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statfsSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { poolLayout } from '../../src/format/layout.js';
import { listLoopDevices } from '../../src/system/loop.js';
import { BLOCK_CAP, MOUNT_CAP, ROOT, cleanupDir, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';

const HPPCTL_JS = path.join(ROOT, 'dist/cmd/hppctl.js');
const MiB = 1024 * 1024;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the built CLI as a child process (async: a running daemon's output pipes keep draining). */
function hppctl(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [HPPCTL_JS, ...args], { env: { PATH: process.env.PATH, ...env }, maxBuffer: 16 * MiB }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** Mount points at or below `dir`, from mountinfo. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)));
}

async function loopsUnder(dir: string): Promise<string[]> {
  return (await listLoopDevices()).filter((d) => d.backFile.startsWith(`${dir}/`)).map((d) => `${d.name} ${d.backFile}`);
}

/** Everything observable under `dir`: each entry (type, size, mtime, link target), its mounts and loop devices. */
async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = (p: string) => {
    const st = lstatSync(p, { bigint: true });
    const kind = st.isDirectory() ? 'd' : st.isSymbolicLink() ? `l->${readlinkSync(p)}` : st.isFile() ? 'f' : 'o';
    out.push(`${path.relative(dir, p)} ${kind} ${st.isDirectory() ? '' : st.size} ${st.mtimeNs} ${st.blocks}`);
    if (st.isDirectory()) for (const n of readdirSync(p).sort()) walk(path.join(p, n));
  };
  walk(dir);
  const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => (l.split(' ')[4] ?? '').startsWith(`${dir}/`))
    .map((l) => l.split(' ').slice(0, 5).join(' '));
  return [...out, ...mountinfo, ...(await loopsUnder(dir))];
}

interface OrphanJson {
  kind: string;
  pool: string;
  path: string;
  detail: string;
  action: string;
  requires?: string;
}

describe('hppctl: pools, volumes, orphans and gc on a real pool', () => {
  let dir: string;
  let pool: string;
  const L = () => poolLayout(pool);
  let d: DriverProcess | undefined;
  let strayLoop: string;
  const ids: Record<string, string> = {};
  const hashes: Record<string, string> = {};
  const poolArgs = () => ['--pool', `default=${pool}`];
  const target = (n: string) => `${dir}/pods/${n}`;

  beforeAll(async () => {
    if (!existsSync(HPPCTL_JS)) throw new Error(`${HPPCTL_JS} is missing: run 'npx tsc -p .' before the tests`);
    dir = scratchDir('hppctl');
    pool = `${dir}/pool`;
    for (const p of [pool, `${dir}/pods`, `${dir}/scratch`, `${dir}/outside`]) mkdirSync(p);
    writeFileSync(`${dir}/outside/keep.txt`, 'must survive gc\n');

    // Real volumes, made by the real daemon.
    d = await startDriver({ dir, args: poolArgs() });
    const ctl = d.clients.controller;
    const create = async (name: string, bytes: number, cap: object, parameters: Record<string, string> = {}) => {
      const res = await ctl.CreateVolume({ name, volume_capabilities: [cap], capacity_range: { required_bytes: String(bytes) }, parameters });
      ids[name] = res.volume.volume_id as string;
    };
    // As csi-provisioner asks with --extra-create-metadata.
    await create('vol-a', 64 * MiB, MOUNT_CAP, { createDiskImage: 'true', 'csi.storage.k8s.io/pvc/name': 'vm-a', 'csi.storage.k8s.io/pvc/namespace': 'vms', 'csi.storage.k8s.io/pv/name': 'vol-a' });
    await create('vol-b', 32 * MiB, MOUNT_CAP);
    await create('vol-c', 16 * MiB, MOUNT_CAP);
    await create('blk-a', 16 * MiB, BLOCK_CAP);
    await create('blk-b', 8 * MiB, BLOCK_CAP, { preallocation: 'true' });
    await d.clients.node.NodePublishVolume({ volume_id: ids['vol-a'], target_path: target('vol-a'), volume_capability: MOUNT_CAP });
    await d.clients.node.NodePublishVolume({ volume_id: ids['blk-a'], target_path: target('blk-a'), volume_capability: BLOCK_CAP });
    writeFileSync(`${target('vol-a')}/data.bin`, randomBytes(MiB));
    execFileSync('dd', ['if=/dev/urandom', `of=${target('blk-a')}`, 'bs=1M', 'count=2', 'oflag=direct', 'status=none']);
    await d.stop();
    d = undefined;
    hashes['vol-a'] = sha256(`${pool}/vol-a/data.bin`);
    hashes['blk-a'] = sha256(`${L().blockDir}/blk-a.img`);
    hashes['blk-b'] = sha256(`${L().blockDir}/blk-b.img`);

    // One orphan of each kind, by hand.
    mkdirSync(`${pool}/stray-dir`); // (a)
    writeFileSync(`${pool}/stray-dir/junk.bin`, randomBytes(64 * 1024));
    symlinkSync(`${dir}/outside`, `${pool}/stray-dir/escape`);
    execFileSync('truncate', ['-s', '8M', `${L().blockDir}/stray.img`]); // (b)
    execFileSync('truncate', ['-s', '8M', `${L().blockDir}/looped.img`]); // (b) and (d)
    strayLoop = execFileSync('losetup', ['--find', '--show', `${L().blockDir}/looped.img`]).toString().trim();
    mkdirSync(`${L().tmpDir}/half-built`); // (c)
    writeFileSync(`${L().tmpDir}/half-built/disk.img`, 'x');
    writeFileSync(`${L().trashDir}/old-vol.1700000000000.abcdef`, 'old data');
    symlinkSync(`${dir}/outside`, `${L().trashDir}/escape-link`);
    mkdirSync(`${dir}/scratch/stray-target`); // (e)
    execFileSync('mount', ['--bind', `${pool}/vol-b`, `${dir}/scratch/stray-target`]);
    // ...and one inside the stray directory: gc unmounts it before it may remove the directory.
    mkdirSync(`${pool}/stray-dir/sub`);
    execFileSync('mount', ['--bind', `${pool}/vol-b`, `${pool}/stray-dir/sub`]);
    rmSync(`${pool}/vol-c`, { recursive: true }); // (f)
    writeFileSync(`${L().volumesDir}/.vol-a.json.tmp-123-abcdef01`, '{"half":'); // (g)
  }, 120_000);

  afterAll(async () => {
    await d?.stop();
    if (!dir) return;
    await cleanupDir(dir);
    // Nothing leaked: no mounts and no loop devices left from this test.
    expect(mountsUnder(dir)).toEqual([]);
    expect(await loopsUnder(dir)).toEqual([]);
    expect(execFileSync('losetup', ['-l']).toString()).not.toContain(dir);
    expect(execFileSync('findmnt', ['-rn', '-o', 'TARGET']).toString()).not.toContain(dir);
  });

  const expectedOrphans = () =>
    [
      ['directory', `${pool}/stray-dir`],
      ['image', `${L().blockDir}/looped.img`],
      ['image', `${L().blockDir}/stray.img`],
      ['loop', strayLoop],
      ['mount', `${dir}/scratch/stray-target`],
      ['mount', `${pool}/stray-dir/sub`],
      ['record', `${L().volumesDir}/vol-c.json`],
      ['temp-file', `${L().volumesDir}/.vol-a.json.tmp-123-abcdef01`],
      ['tmp', `${L().tmpDir}/half-built`],
      ['trash', `${L().trashDir}/escape-link`],
      ['trash', `${L().trashDir}/old-vol.1700000000000.abcdef`],
    ]
      .map((x) => x.join(' '))
      .sort();

  const orphanKeys = (list: OrphanJson[]) => list.map((o) => `${o.kind} ${o.path}`).sort();

  it('pools --json: state, filesystem, capacity from statfs, committed capacity and volume count', async () => {
    const r = await hppctl([...poolArgs(), 'pools', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const [p] = JSON.parse(r.stdout).pools;
    const fs = statfsSync(pool, { bigint: true });
    expect(p).toMatchObject({ name: 'default', path: pool, state: 'ready', daemonPid: null, initialized: true, volumes: 5 });
    expect(p.totalBytes).toBe((fs.blocks * fs.bsize).toString());
    expect(p.committedBytes).toBe(String((64 + 32 + 16 + 16 + 8) * MiB));
    expect(p.overcommit).toBeCloseTo((136 * MiB) / Number(fs.blocks * fs.bsize), 5);
    expect(BigInt(p.usedBytes) + BigInt(p.freeBytes)).toBeLessThanOrEqual(BigInt(p.totalBytes));
    expect(typeof p.filesystem).toBe('string');
    expect(['none', 'xfs-project', 'ext4-project', 'btrfs-qgroup']).toContain(p.sizeEnforcement.kind);

    // The same pool through the daemon's other ways of naming it.
    const envRun = await hppctl(['pools', '--json'], { HPP_POOLS: `default=${pool}` });
    expect(JSON.parse(envRun.stdout).pools[0]).toMatchObject({ name: 'default', volumes: 5 });
    const jsonRun = await hppctl(['--pools-json', JSON.stringify([{ name: 'default', path: pool }]), 'pools', '--json']);
    expect(JSON.parse(jsonRun.stdout).pools[0]).toMatchObject({ name: 'default', volumes: 5 });
    writeFileSync(`${dir}/pools.json`, JSON.stringify([{ name: 'default', path: pool }, { name: 'gone', path: `${dir}/no-such-pool` }]));
    const fileRun = await hppctl(['pools', '--json'], { HPP_POOLS_FILE: `${dir}/pools.json` });
    const byName = Object.fromEntries(JSON.parse(fileRun.stdout).pools.map((x: { name: string }) => [x.name, x]));
    expect(byName.default).toMatchObject({ state: 'ready', volumes: 5 });
    expect(byName.gone).toMatchObject({ state: 'missing', volumes: null, committedBytes: null, totalBytes: null });
    const legacy = await hppctl(['--hostpath', pool, 'pools', '--json']);
    // The records name pool "default": under the legacy name they are not this pool's (the daemon agrees).
    expect(JSON.parse(legacy.stdout).pools[0]).toMatchObject({ name: 'legacy', volumes: 0 });
    expect(JSON.parse(legacy.stdout).pools[0].problems.length).toBe(5);

    const human = await hppctl([...poolArgs(), 'pools']);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^POOL\s+PATH\s+STATE\s+FS/);
    expect(human.stdout).toContain(pool);
  });

  it('volumes --json: capacities, usage, state, publications and whether they are mounted now', async () => {
    const r = await hppctl([...poolArgs(), 'volumes', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const vols = Object.fromEntries(JSON.parse(r.stdout).volumes.map((v: { name: string }) => [v.name, v]));
    expect(Object.keys(vols).sort()).toEqual(['blk-a', 'blk-b', 'vol-a', 'vol-b', 'vol-c']);
    expect(vols['vol-a']).toMatchObject({
      id: ids['vol-a'],
      pool: 'default',
      mode: 'filesystem',
      capacityBytes: String(64 * MiB),
      state: 'ready',
      data: 'present',
      diskImage: true,
      pvc: { namespace: 'vms', name: 'vm-a' },
      publications: [{ target: target('vol-a'), readOnly: false, mounted: true }],
    });
    // data.bin (1 MiB) plus the sparse disk.img.
    expect(BigInt(vols['vol-a'].usedBytes)).toBeGreaterThanOrEqual(BigInt(MiB));
    expect(vols['vol-b']).toMatchObject({ mode: 'filesystem', diskImage: false, publications: [], data: 'present', pvc: null });
    expect(vols['vol-c']).toMatchObject({ data: 'missing', usedBytes: null });
    expect(vols['blk-a']).toMatchObject({ mode: 'block', capacityBytes: String(16 * MiB), usedFrom: 'image-allocated', publications: [{ target: target('blk-a'), mounted: true }] });
    expect(vols['blk-a'].publications[0].device).toMatch(/^\/dev\/loop\d+$/);
    expect(BigInt(vols['blk-a'].usedBytes)).toBeGreaterThanOrEqual(BigInt(2 * MiB));
    expect(BigInt(vols['blk-a'].usedBytes)).toBeLessThan(BigInt(16 * MiB));
    expect(vols['blk-b']).toMatchObject({ preallocation: expect.stringMatching(/^(fallocate|full)$/), usedBytes: String(8 * MiB) });

    const only = await hppctl([...poolArgs(), 'volumes', '--pool', 'default']);
    expect(only.code).toBe(0);
    expect(only.stdout).toMatch(/^VOLUME\s+POOL\s+MODE\s+CAPACITY\s+USED/);
    expect(only.stdout).toContain(`${target('vol-a')} [mounted]`);
    expect(only.stdout.split('\n').find((l) => l.startsWith(`${ids['vol-a']} `))).toMatch(/\svms\/vm-a\s/);
    expect((await hppctl([...poolArgs(), 'volumes', '--pool', 'nope'])).code).toBe(2);
  });

  it('orphans --json finds exactly the planted orphans, nothing of a live volume', async () => {
    const r = await hppctl([...poolArgs(), 'orphans', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const { orphans } = JSON.parse(r.stdout) as { orphans: OrphanJson[] };
    expect(orphanKeys(orphans)).toEqual(expectedOrphans());
    const by = (kind: string) => orphans.filter((o) => o.kind === kind);
    expect(by('directory')[0]).toMatchObject({ action: 'remove', requires: '--include-directories' });
    expect(by('record')[0]).toMatchObject({ action: 'remove-record', requires: '--include-records' });
    expect(by('loop')[0]).toMatchObject({ action: 'detach' });
    for (const m of by('mount')) expect(m).toMatchObject({ action: 'unmount', detail: expect.stringContaining('vol-b') });
    expect(by('image').find((o) => o.path.endsWith('looped.img'))!.detail).toContain(strayLoop);

    // Configured under another name, every record belongs to "another pool": reported as unreadable,
    // and whatever they may own (directories, images, mounts, loop devices) is not taken for an orphan.
    const renamed = JSON.parse((await hppctl(['--hostpath', pool, 'orphans', '--json'])).stdout).orphans as OrphanJson[];
    expect(renamed.filter((o) => o.kind === 'bad-record').map((o) => path.basename(o.path)).sort()).toEqual(['blk-a.json', 'blk-b.json', 'vol-a.json', 'vol-b.json', 'vol-c.json']);
    expect(renamed.every((o) => o.kind !== 'bad-record' || o.action === 'none')).toBe(true);
    // (The stray bind mount of vol-b is kept too: vol-b's unreadable record may own it.)
    expect(orphanKeys(renamed.filter((o) => o.kind !== 'bad-record'))).toEqual(expectedOrphans().filter((k) => !k.startsWith('record ') && !k.startsWith('mount ')));

    const human = await hppctl([...poolArgs(), 'orphans']);
    expect(human.stdout).toMatch(/^POOL\s+KIND\s+GC WOULD\s+PATH\s+DETAIL/);
    expect(human.stdout.trim().split('\n')).toHaveLength(expectedOrphans().length + 1);
  });

  it('gc --dry-run lists every action and changes nothing', async () => {
    const before = await listing(dir);
    const r = await hppctl([...poolArgs(), 'gc', '--dry-run', '--include-records', '--include-directories', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { dryRun: boolean; steps: Array<OrphanJson & { result: string }>; summary: Record<string, number> };
    expect(out.dryRun).toBe(true);
    expect(out.steps.map((s) => `${s.kind} ${s.path}`).sort()).toEqual(expectedOrphans());
    expect(out.steps.every((s) => s.result === 'would')).toBe(true);
    const human = await hppctl([...poolArgs(), 'gc', '--dry-run']);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(`would unmount ${dir}/scratch/stray-target`);
    expect(human.stdout).toContain(`would detach ${strayLoop}`);
    expect(human.stdout).toContain('--include-directories');
    expect(await listing(dir)).toEqual(before);
  });

  it('gc removes exactly the orphans: records and directories only when asked; live volumes stay intact', async () => {
    const first = await hppctl([...poolArgs(), 'gc']);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect(first.stdout).toContain(`unmounted ${dir}/scratch/stray-target`);
    expect(first.stdout).toContain(`detached ${strayLoop}`);
    expect(first.stdout).toContain(`removed ${L().blockDir}/stray.img`);
    expect(first.stdout).toMatch(/9 done, 2 skipped, 0 failed/);
    let left = JSON.parse((await hppctl([...poolArgs(), 'orphans', '--json'])).stdout).orphans as OrphanJson[];
    expect(orphanKeys(left)).toEqual([`directory ${pool}/stray-dir`, `record ${L().volumesDir}/vol-c.json`]);

    const second = await hppctl([...poolArgs(), 'gc', '--include-records', '--include-directories']);
    expect(second.code, second.stdout + second.stderr).toBe(0);
    expect(second.stdout).toContain(`removed ${pool}/stray-dir`);
    expect(second.stdout).toContain(`removed record ${L().volumesDir}/vol-c.json`);
    left = JSON.parse((await hppctl([...poolArgs(), 'orphans', '--json'])).stdout).orphans as OrphanJson[];
    expect(left).toEqual([]);

    // Symlinks were removed, never followed; outside the pool only the unmount and the detach happened.
    expect(readFileSync(`${dir}/outside/keep.txt`, 'utf8')).toBe('must survive gc\n');
    expect(existsSync(`${dir}/scratch/stray-target`)).toBe(true);
    expect(mountsUnder(`${dir}/scratch`)).toEqual([]);
    expect(mountsUnder(pool)).toEqual([]);
    expect((await listLoopDevices()).some((l) => l.name === strayLoop && l.backFile.startsWith(dir))).toBe(false);

    // Every real volume, its data, record and publication are as they were.
    expect(sha256(`${pool}/vol-a/data.bin`)).toBe(hashes['vol-a']);
    expect(sha256(`${L().blockDir}/blk-a.img`)).toBe(hashes['blk-a']);
    expect(sha256(`${L().blockDir}/blk-b.img`)).toBe(hashes['blk-b']);
    expect(existsSync(`${pool}/vol-b`)).toBe(true);
    expect(existsSync(`${pool}/vol-a/disk.img`)).toBe(true);
    expect(readdirSync(`${L().volumesDir}`).sort()).toEqual(['blk-a.json', 'blk-b.json', 'vol-a.json', 'vol-b.json']);
    expect(mountsUnder(`${dir}/pods`).sort()).toEqual([target('blk-a'), target('vol-a')]);
    const vols = JSON.parse((await hppctl([...poolArgs(), 'volumes', '--json'])).stdout).volumes as Array<{ name: string; publications: Array<{ mounted: boolean }> }>;
    expect(vols.map((v) => v.name).sort()).toEqual(['blk-a', 'blk-b', 'vol-a', 'vol-b']);
    expect(vols.flatMap((v) => v.publications.map((p) => p.mounted))).toEqual([true, true]);
  });

  it('volumes shows a recorded publication whose mount is gone as not mounted, and orphans stays empty', async () => {
    execFileSync('umount', [target('vol-a')]);
    const vols = JSON.parse((await hppctl([...poolArgs(), 'volumes', '--json'])).stdout).volumes as Array<{ name: string; publications: Array<{ mounted: boolean }> }>;
    expect(vols.find((v) => v.name === 'vol-a')!.publications).toMatchObject([{ mounted: false }]);
    expect(JSON.parse((await hppctl([...poolArgs(), 'orphans', '--json'])).stdout).orphans).toEqual([]);
  });

  it('gc refuses while a daemon serves the pool, unless --force; a dry run only warns', async () => {
    d = await startDriver({ dir, args: poolArgs() });
    // The daemon re-made the publication unmounted above, and kept every volume.
    expect(mountsUnder(`${dir}/pods`).sort()).toEqual([target('blk-a'), target('vol-a')]);
    const listed = await d.clients.controller.ListVolumes({});
    expect(listed.entries.map((e: { volume: { volume_id: string } }) => e.volume.volume_id).sort()).toEqual(
      [ids['blk-a'], ids['blk-b'], ids['vol-a'], ids['vol-b']].sort(),
    );

    const pools = JSON.parse((await hppctl([...poolArgs(), 'pools', '--json'])).stdout).pools;
    expect(pools[0]).toMatchObject({ state: 'ready', daemonPid: String(d.child.pid), volumes: 4 });
    expect((await hppctl([...poolArgs(), 'pools'])).stdout).toContain(`served by pid ${d.child.pid}`);

    writeFileSync(`${L().trashDir}/late.123.abcdef`, 'x');
    const refused = await hppctl([...poolArgs(), 'gc']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`pid ${d.child.pid}`);
    expect(refused.stderr).toContain('--force');
    expect(existsSync(`${L().trashDir}/late.123.abcdef`)).toBe(true);

    const dry = await hppctl([...poolArgs(), 'gc', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stderr).toContain('warning');
    expect(dry.stdout).toContain(`would remove ${L().trashDir}/late.123.abcdef`);
    expect(existsSync(`${L().trashDir}/late.123.abcdef`)).toBe(true);

    const forced = await hppctl([...poolArgs(), 'gc', '--force']);
    expect(forced.code, forced.stdout + forced.stderr).toBe(0);
    expect(forced.stdout).toContain(`removed ${L().trashDir}/late.123.abcdef`);
    expect(forced.stdout).toMatch(/1 done, 0 skipped, 0 failed/);
    expect((await d.clients.controller.ListVolumes({})).entries).toHaveLength(4);
    await d.stop();
    d = undefined;
  });
});
