/**
 * A pool KubeVirt's hostpath-provisioner (HPP) left, with a VM still running on one of its volumes
 * (HPP's bind mount at the VM pod's target), taken over by the real daemon and looked at by the real
 * hppctl: real directories, bind mounts and processes. Invariants: hppctl never reports HPP data as an
 * orphan and gc never touches it or its mounts, before and after the daemon has served the pool; the
 * daemon serves the volumes under their PV names (publish, restart, unpublish of HPP's own mount,
 * snapshot, restore, delete), never moving their data to make them its own.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MOUNT_CAP, ROOT, cleanupDir, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';
import { plantHppPool } from '../helpers/hpp-pool.js';

const HPPCTL_JS = path.join(ROOT, 'dist/cmd/hppctl.js');
const A = 'pvc-aaaaaaaa-0000-4000-8000-000000000001';
const B = 'pvc-bbbbbbbb-0000-4000-8000-000000000002';
const SNAP = 'snapshot-cccccccc-0000-4000-8000-000000000003';

function hppctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [HPPCTL_JS, ...args], { env: { PATH: process.env.PATH }, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)));
}

/** Every entry below `dir` (type, size, mtime) and the mounts below it: what gc must leave as it is. */
function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    const st = lstatSync(p, { bigint: true });
    out.push(`${path.relative(dir, p)} ${st.isDirectory() ? 'd' : 'f'} ${st.isDirectory() ? '' : st.size} ${st.mtimeNs}`);
    if (st.isDirectory()) for (const n of readdirSync(p).sort()) walk(path.join(p, n));
  };
  walk(dir);
  return [...out, ...mountsUnder(path.dirname(dir)).sort()];
}

describe('an HPP pool with a running VM, taken over', () => {
  let dir: string;
  let pool: string;
  let d: DriverProcess | undefined;
  const poolArgs = () => ['--pool', `local=${pool}`];
  const target = (pod: string) => `${dir}/pods/${pod}/mount`;

  beforeAll(() => {
    if (!existsSync(HPPCTL_JS)) throw new Error(`${HPPCTL_JS} is missing: run 'npx tsc -p .' before the tests`);
    dir = scratchDir('hpp-pool');
    pool = `${dir}/pool`;
    mkdirSync(pool);
    plantHppPool(pool, {
      volumes: [
        { name: A, files: { 'marker.txt': 'disk of vm-a\n' }, diskImageBytes: 256 << 20 },
        { name: B, files: { 'marker.txt': 'disk of vm-b\n' }, diskImageBytes: 64 << 20 },
      ],
      snapshots: [{ id: SNAP, source: A }],
    });
    // vm-a kept running across the swap: HPP's bind mount of its volume is at the pod's target.
    mkdirSync(target('vm-a'), { recursive: true });
    execFileSync('mount', ['--bind', `${pool}/csi/${A}`, target('vm-a')]);
  });

  afterAll(async () => {
    await d?.stop();
    if (!dir) return;
    await cleanupDir(dir);
    expect(mountsUnder(dir)).toEqual([]);
    expect(execFileSync('findmnt', ['-rn', '-o', 'TARGET']).toString()).not.toContain(dir);
  });

  async function expectHppDataUntouchedByHppctl(): Promise<void> {
    const before = listing(`${pool}/csi`);
    const orphans = await hppctl([...poolArgs(), 'orphans', '--json']);
    expect(orphans.code, orphans.stderr).toBe(0);
    const found = (JSON.parse(orphans.stdout) as { orphans: Array<{ path: string }> }).orphans;
    expect(found.filter((o) => o.path.includes('/csi') || o.path.startsWith(`${dir}/pods`))).toEqual([]);
    const gc = await hppctl([...poolArgs(), 'gc', '--force', '--include-directories', '--include-records']);
    expect(gc.code, gc.stderr + gc.stdout).toBe(0);
    expect(listing(`${pool}/csi`)).toEqual(before);
    expect(mountsUnder(`${dir}/pods`)).toContain(target('vm-a'));
  }

  it('hppctl, before any daemon of ours: lists the HPP volumes, reports no orphan, gc removes and unmounts nothing', async () => {
    const vols = await hppctl([...poolArgs(), 'volumes', '--json']);
    expect(vols.code, vols.stderr).toBe(0);
    const rows = (JSON.parse(vols.stdout) as { volumes: Array<{ id: string; origin: string; recorded: boolean; data: string; diskImage: boolean }> }).volumes;
    expect(rows.map((r) => [r.id, r.origin, r.recorded, r.data, r.diskImage])).toEqual([
      [A, 'hpp', false, 'present', true],
      [B, 'hpp', false, 'present', true],
    ]);
    const snaps = await hppctl([...poolArgs(), 'snapshots', '--json']);
    expect(snaps.code, snaps.stderr).toBe(0);
    const snapRows = (JSON.parse(snaps.stdout) as { snapshots: Array<{ id: string; sourceVolumeId: string; origin: string }> }).snapshots;
    expect(snapRows.map((r) => [r.id, r.sourceVolumeId, r.origin])).toEqual([[SNAP, A, 'hpp']]);
    await expectHppDataUntouchedByHppctl();
  });

  it('the daemon publishes an HPP volume under its PV name, keeps it across kill -9, and takes down the mount HPP made', async () => {
    d = await startDriver({ dir, args: poolArgs() });
    const vctx = { storagePool: 'local' };
    await d.clients.node.NodePublishVolume({ volume_id: B, target_path: target('vm-b'), volume_capability: MOUNT_CAP, volume_context: vctx });
    expect(readFileSync(`${target('vm-b')}/marker.txt`, 'utf8')).toBe('disk of vm-b\n');
    expect(statSize(`${target('vm-b')}/disk.img`)).toBe(64 << 20);
    await d.kill();
    d = await startDriver({ dir, args: poolArgs() });
    expect(mountsUnder(`${dir}/pods`).sort()).toEqual([target('vm-a'), target('vm-b')].sort());
    // Only a kubelet retry adds a publication: the restart neither dropped vm-b's nor made a second one.
    await d.clients.node.NodePublishVolume({ volume_id: B, target_path: target('vm-b'), volume_capability: MOUNT_CAP, volume_context: vctx });
    expect(mountsUnder(target('vm-b'))).toEqual([target('vm-b')]);
    // vm-a stops: kubelet unpublishes the mount HPP made.
    await d.clients.node.NodeUnpublishVolume({ volume_id: A, target_path: target('vm-a') });
    expect(mountsUnder(`${dir}/pods`)).toEqual([target('vm-b')]);
    expect(readFileSync(`${pool}/csi/${A}/marker.txt`, 'utf8')).toBe('disk of vm-a\n');
    const listed = (await d.clients.controller.ListVolumes({})).entries.map((e: { volume: { volume_id: string } }) => e.volume.volume_id);
    expect(listed).toEqual([A, B]);
    await d.clients.node.NodeUnpublishVolume({ volume_id: B, target_path: target('vm-b') });
    await d.stop();
    d = undefined;
    // Re-mount vm-a as HPP had it, for the next check.
    mkdirSync(target('vm-a'), { recursive: true });
    execFileSync('mount', ['--bind', `${pool}/csi/${A}`, target('vm-a')]);
  }, 60_000);

  it('hppctl, after the daemon has recorded HPP volumes: still no orphan, gc still touches nothing', async () => {
    expect(existsSync(`${pool}/.hpp/volumes/${B}.json`)).toBe(true);
    await expectHppDataUntouchedByHppctl();
  });

  it('the daemon snapshots, restores and deletes HPP volumes and snapshots: deleting removes exactly their directories', async () => {
    execFileSync('umount', [target('vm-a')]);
    d = await startDriver({ dir, args: poolArgs() });
    const ctl = d.clients.controller;
    const snap = await ctl.CreateSnapshot({ name: 'snap-of-b', source_volume_id: B });
    const restored = await ctl.CreateVolume({
      name: 'restored-b',
      volume_capabilities: [MOUNT_CAP],
      capacity_range: { required_bytes: String(128 << 20) },
      volume_content_source: { snapshot: { snapshot_id: snap.snapshot.snapshot_id } },
    });
    const fromHpp = await ctl.CreateVolume({
      name: 'restored-hpp-snap',
      volume_capabilities: [MOUNT_CAP],
      capacity_range: { required_bytes: String(512 << 20) },
      volume_content_source: { snapshot: { snapshot_id: SNAP } },
    });
    expect(readFileSync(`${pool}/restored-b/marker.txt`, 'utf8')).toBe('disk of vm-b\n');
    expect(readFileSync(`${pool}/restored-hpp-snap/marker.txt`, 'utf8')).toBe('disk of vm-a\n');
    await ctl.DeleteVolume({ volume_id: B });
    await ctl.DeleteSnapshot({ snapshot_id: SNAP });
    await ctl.DeleteSnapshot({ snapshot_id: snap.snapshot.snapshot_id });
    for (const v of [restored, fromHpp]) await ctl.DeleteVolume({ volume_id: v.volume.volume_id });
    await d.stop();
    d = undefined;
    expect(readdirSync(`${pool}/csi`).sort()).toEqual([A, 'snapshots']);
    expect(readdirSync(`${pool}/csi/snapshots`)).toEqual([]);
    expect(readFileSync(`${pool}/csi/${A}/marker.txt`, 'utf8')).toBe('disk of vm-a\n');
    expect(readdirSync(`${pool}/.hpp/trash`)).toEqual([]);
  }, 60_000);
});

function statSize(p: string): number {
  return lstatSync(p).size;
}
