/**
 * Project quotas on the kernels users run (XFS and ext4), in the VM with Debian's stock kernel: the
 * host's kernel has neither (no CONFIG_XFS_QUOTA, no CONFIG_QFMT_V2). What a pod's writer sees is
 * checked with dd in a child process: XFS refuses a project overrun with ENOSPC, for root too; ext4
 * with EDQUOT, except for a writer with CAP_SYS_RESOURCE, which a container's root does not have.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { poolLayout } from '../../src/format/layout.js';
import { MOUNT_CAP, cleanupDir, readVolumeRecord, scratchDir, startDriver, type DriverProcess, type Msg } from '../helpers/driver.js';
import { makeLoopDevice, unmountAll, type TestLoop } from '../helpers/loopdev.js';
import { MiB, fill, mountOptions, sh, vmDisks, type Fill } from './lib.js';

const inVm = process.env.HPP_KERNEL_VM === '1';

async function create(d: DriverProcess, name: string, pool: string, mib: number): Promise<Msg> {
  const { volume } = await d.clients.controller.CreateVolume({
    name,
    volume_capabilities: [MOUNT_CAP],
    capacity_range: { required_bytes: String(mib * MiB) },
    parameters: { storagePool: pool },
  });
  return volume;
}

async function publish(d: DriverProcess, volumeId: string, target: string): Promise<void> {
  await d.clients.node.NodePublishVolume({ volume_id: volumeId, target_path: target, volume_capability: MOUNT_CAP });
}

/**
 * Writes `limitMiB` − 10 MiB into `file` (accepted), then 20 MiB more: refused with `refusal` once the
 * file holds the limit, within 2 MiB (metadata counts too). What the second writer left.
 */
function expectLimitAt(file: string, limitMiB: number, refusal: 'ENOSPC' | 'EDQUOT', opts: { dropSysResource?: boolean } = {}): Fill {
  const within = fill(file, limitMiB - 10, opts);
  expect(within.refused, within.stderr).toBeUndefined();
  expect(within.bytes).toBe((limitMiB - 10) * MiB);
  const past = fill(file, 20, opts);
  expect(past.refused, past.stderr).toBe(refusal);
  expect(past.bytes).toBeLessThanOrEqual(limitMiB * MiB);
  expect(past.bytes).toBeGreaterThanOrEqual((limitMiB - 2) * MiB);
  return past;
}

async function stats(d: DriverProcess, volumeId: string, target: string): Promise<{ total: bigint; used: bigint; available: bigint }> {
  const r = await d.clients.node.NodeGetVolumeStats({ volume_id: volumeId, volume_path: target });
  const b = r.usage.find((u: { unit: string }) => u.unit === 'BYTES');
  return { total: BigInt(b.total), used: BigInt(b.used), available: BigInt(b.available) };
}

function projectIdOf(poolDir: string, name: string): number {
  const rec = readVolumeRecord(poolDir, name);
  expect(rec, `record of ${name} in ${poolDir}`).toBeDefined();
  expect(typeof rec!.projectId).toBe('number');
  return rec!.projectId as number;
}

/** The project id on the directory itself (lsattr -p), which is what the kernel counts by. */
function projectOnDisk(dir: string): number {
  return Number(sh('lsattr', '-d', '-p', dir).trim().split(/\s+/)[0]);
}

describe.skipIf(!inVm)('XFS project quotas: a device pool and two directory pools on one XFS', () => {
  let dir: string;
  let loop: TestLoop;
  let d: DriverProcess;
  const disk = vmDisks()[0];
  let devPool: string;
  let xfsMnt: string;
  let poolA: string;
  let poolB: string;
  const args = () => ['--pool', `xd=${devPool}:device=${disk}`, '--pool', `xa=${poolA}`, '--pool', `xb=${poolB}`];

  beforeAll(async () => {
    expect(disk, 'a blank scratch disk (hack/kernel-vm/run --disk)').toBeDefined();
    dir = scratchDir('kxfs');
    devPool = `${dir}/dev-pool`;
    xfsMnt = `${dir}/xfs`;
    mkdirSync(xfsMnt);
    loop = makeLoopDevice(`${dir}/xfs.img`, 600);
    sh('mkfs.xfs', '-q', loop.device);
    sh('mount', '-o', 'prjquota', loop.device, xfsMnt);
    poolA = `${xfsMnt}/a`;
    poolB = `${xfsMnt}/b`;
    mkdirSync(poolA);
    mkdirSync(poolB);
    mkdirSync(`${dir}/pods`);
    d = await startDriver({ dir, args: args() });
  });
  afterAll(async () => {
    await d?.stop();
    for (const t of ['x50', 'a1', 'b1', 'again', 'hpp'].map((n) => `${dir}/pods/${n}`)) unmountAll(t);
    unmountAll(xfsMnt);
    unmountAll(devPool);
    loop?.detach();
    if (disk) sh('wipefs', '-a', '-q', disk);
    await cleanupDir(dir);
  });

  it('formats the blank disk XFS, mounts it prjquota, and says sizes are enforced in all three pools', () => {
    expect(mountOptions(devPool)).toContain('prjquota');
    expect(sh('blkid', '-o', 'value', '-s', 'TYPE', disk!).trim()).toBe('xfs');
    const logs = d.logs();
    expect(logs).toContain(`XFS project quotas on ${devPool}`);
    expect(logs).toContain(`XFS project quotas on ${xfsMnt}`);
    expect(logs).not.toContain('volume sizes are not enforced');
    // No SELinux in this boot: nothing is labelled (selinux-volumes.test.ts has the other side).
    expect(logs).not.toContain('SELinux is on');
  });

  it('a 50 MiB volume: writes within it succeed, past it ENOSPC, for root too; stats are the volume\'s own', async () => {
    const v = await create(d, 'x50', 'xd', 50);
    const target = `${dir}/pods/x50`;
    await publish(d, v.volume_id, target);
    const past = expectLimitAt(`${target}/f`, 50, 'ENOSPC');

    const s = await stats(d, v.volume_id, target);
    expect(s.total).toBe(BigInt(50 * MiB));
    expect(Number(s.used - BigInt(past.bytes))).toBeLessThan(MiB);
    expect(s.available).toBe(s.total - s.used);
    // statfs in the volume says the project's limit, as df in a pod shows it.
    expect(sh('stat', '-f', '-c', '%b %S', target).trim().split(' ').map(Number).reduce((a, b) => a * b)).toBe(50 * MiB);
  });

  it('expansion raises the limit online: the published volume takes 30 MiB more', async () => {
    const id = 'test-node:xd:x50';
    const target = `${dir}/pods/x50`;
    await d.clients.controller.ControllerExpandVolume({ volume_id: id, capacity_range: { required_bytes: String(80 * MiB) }, volume_capability: MOUNT_CAP });
    await d.clients.node.NodeExpandVolume({ volume_id: id, volume_path: target, capacity_range: { required_bytes: String(80 * MiB) }, volume_capability: MOUNT_CAP });
    const before = (await stats(d, id, target)).used;
    const more = fill(`${target}/g`, 40);
    expect(more.refused, more.stderr).toBe('ENOSPC');
    const s = await stats(d, id, target);
    expect(s.total).toBe(BigInt(80 * MiB));
    expect(Number(s.used)).toBeGreaterThanOrEqual(78 * MiB);
    expect(s.used - before).toBeGreaterThan(BigInt(28 * MiB));
  });

  it("a hostpath-provisioner volume expanded: its directory tree, files already in it included, gets a project and the new size as limit", async () => {
    // As HPP left it (after the daemon started: found when it is asked for), with 20 MiB in it.
    const pv = 'pvc-0e0e0e0e-0000-4000-8000-00000000cafe';
    const hppDir = `${poolA}/csi/${pv}`;
    mkdirSync(`${hppDir}/sub`, { recursive: true });
    expect(fill(`${hppDir}/sub/existing`, 20).refused).toBeUndefined();
    const target = `${dir}/pods/hpp`;
    await d.clients.node.NodePublishVolume({ volume_id: pv, target_path: target, volume_capability: MOUNT_CAP, volume_context: { storagePool: 'xa' } });
    expect(projectOnDisk(hppDir)).toBe(0);
    await d.clients.controller.ControllerExpandVolume({ volume_id: pv, capacity_range: { required_bytes: String(40 * MiB) }, volume_capability: MOUNT_CAP });
    const id = projectIdOf(poolA, pv);
    // The whole tree is the project's: what was written before counts against the limit.
    expect(projectOnDisk(hppDir)).toBe(id);
    expect(projectOnDisk(`${hppDir}/sub`)).toBe(id);
    expect(Number(sh('lsattr', '-p', `${hppDir}/sub/existing`).trim().split(/\s+/)[0])).toBe(id);
    const more = fill(`${target}/more`, 30);
    expect(more.refused, more.stderr).toBe('ENOSPC');
    expect(more.bytes).toBeGreaterThanOrEqual(18 * MiB);
    expect(more.bytes).toBeLessThanOrEqual(20 * MiB);
    expect(readFileSync(`${hppDir}/sub/existing`).length).toBe(20 * MiB);
    await d.clients.node.NodeUnpublishVolume({ volume_id: pv, target_path: target });
    // Gone again, with its reserve: the tests below measure the pool's capacity.
    await d.clients.controller.DeleteVolume({ volume_id: pv });
    await vi.waitFor(() => expect(existsSync(hppDir)).toBe(false), { timeout: 10_000 });
    rmdirSync(`${poolA}/csi`);
  });

  it('GetCapacity counts what volumes use from the quota: writing into a volume does not change it, creating one does', async () => {
    const cap = async () => BigInt((await d.clients.controller.GetCapacity({ parameters: { storagePool: 'xa' } })).available_capacity);
    const v = await create(d, 'a1', 'xa', 100);
    const target = `${dir}/pods/a1`;
    await publish(d, v.volume_id, target);
    await new Promise((r) => setTimeout(r, 2_500));
    const c0 = await cap();
    expect(fill(`${target}/f`, 60).refused).toBeUndefined();
    // The tracker rereads usage in the background at most every 2 s (a call that starts a reread
    // answers from the last one), and xfs_quota is slow under emulation: poll until the reread lands.
    let c1 = 0n;
    await vi.waitFor(
      async () => {
        c1 = await cap();
        expect(Number(c0 > c1 ? c0 - c1 : c1 - c0), `GetCapacity ${c1} vs ${c0} before the 60 MiB write`).toBeLessThanOrEqual(2 * MiB);
      },
      { timeout: 30_000, interval: 1_000 },
    );
    await create(d, 'a2', 'xa', 50);
    const c2 = await cap();
    expect(Number(c1 - c2)).toBeGreaterThanOrEqual(48 * MiB);
    expect(Number(c1 - c2)).toBeLessThanOrEqual(52 * MiB);
  });

  it('two pools on one XFS never share a project id, and each volume is limited on its own', async () => {
    const b = await create(d, 'b1', 'xb', 30);
    const target = `${dir}/pods/b1`;
    await publish(d, b.volume_id, target);
    const ids = [projectIdOf(poolA, 'a1'), projectIdOf(poolA, 'a2'), projectIdOf(poolB, 'b1')];
    expect(new Set(ids).size).toBe(3);
    expect(projectOnDisk(`${poolA}/a1`)).toBe(ids[0]);
    expect(projectOnDisk(`${poolB}/b1`)).toBe(ids[2]);
    const f = fill(`${target}/f`, 40);
    expect(f.refused).toBe('ENOSPC');
    expect(f.bytes).toBeLessThanOrEqual(30 * MiB);
    expect(f.bytes).toBeGreaterThanOrEqual(28 * MiB);
  });

  it('delete and re-create under the same name: a new project id, nothing of the old usage', async () => {
    const old = projectIdOf(poolB, 'b1');
    await d.clients.node.NodeUnpublishVolume({ volume_id: 'test-node:xb:b1', target_path: `${dir}/pods/b1` });
    await d.clients.controller.DeleteVolume({ volume_id: 'test-node:xb:b1' });
    const again = await create(d, 'b1', 'xb', 30);
    const fresh = projectIdOf(poolB, 'b1');
    expect(fresh).not.toBe(old);
    const target = `${dir}/pods/again`;
    await publish(d, again.volume_id, target);
    expect(Number((await stats(d, again.volume_id, target)).used)).toBeLessThan(MiB);
    const f = fill(`${target}/f`, 40);
    expect(f.refused).toBe('ENOSPC');
    expect(f.bytes).toBeGreaterThanOrEqual(28 * MiB);
    await d.clients.node.NodeUnpublishVolume({ volume_id: again.volume_id, target_path: target });
  });

  it('project ids survive a restart and a kill -9: same ids, limits still enforced, new ids above every id ever used', async () => {
    const before = { a1: projectIdOf(poolA, 'a1'), a2: projectIdOf(poolA, 'a2'), b1: projectIdOf(poolB, 'b1'), x50: projectIdOf(devPool, 'x50') };
    const everUsed = new Set<number>([...Object.values(before)]);
    for (const pool of [poolA, poolB, devPool]) {
      const recorded = JSON.parse(readFileSync(poolLayout(pool).projectIds, 'utf8')).next as number;
      for (let i = 1000; i < recorded; i++) everUsed.add(i);
    }
    await d.stop();
    unmountAll(`${dir}/pods/a1`);
    unmountAll(`${dir}/pods/x50`);
    d = await startDriver({ dir, args: args() });
    await d.kill();
    d = await startDriver({ dir, args: args() });
    expect({ a1: projectIdOf(poolA, 'a1'), a2: projectIdOf(poolA, 'a2'), b1: projectIdOf(poolB, 'b1'), x50: projectIdOf(devPool, 'x50') }).toEqual(before);
    const target = `${dir}/pods/a1`;
    await publish(d, 'test-node:xa:a1', target);
    const f = fill(`${target}/f`, 60);
    expect(f.refused).toBe('ENOSPC');
    expect(f.bytes).toBeLessThanOrEqual(100 * MiB);
    await d.clients.node.NodeUnpublishVolume({ volume_id: 'test-node:xa:a1', target_path: target });
    await create(d, 'a3', 'xa', 10);
    await create(d, 'b2', 'xb', 10);
    for (const id of [projectIdOf(poolA, 'a3'), projectIdOf(poolB, 'b2')]) expect(everUsed.has(id), `id ${id} was used before`).toBe(false);
    expect(projectIdOf(poolA, 'a3')).not.toBe(projectIdOf(poolB, 'b2'));
  });
});

describe.skipIf(!inVm)('ext4 project quotas', () => {
  let dir: string;
  let loops: TestLoop[] = [];
  let d: DriverProcess;
  let quotaPool: string;
  let plainPool: string;

  beforeAll(async () => {
    dir = scratchDir('kext4');
    const q = makeLoopDevice(`${dir}/q.img`, 300);
    const plain = makeLoopDevice(`${dir}/plain.img`, 300);
    loops = [q, plain];
    sh('mkfs.ext4', '-q', '-O', 'quota,project', q.device);
    sh('mkfs.ext4', '-q', plain.device);
    for (const [name, l, opts] of [['q', q, 'prjquota'], ['plain', plain, 'defaults']] as const) {
      mkdirSync(`${dir}/${name}`);
      sh('mount', '-o', opts, l.device, `${dir}/${name}`);
    }
    quotaPool = `${dir}/q/pool`;
    plainPool = `${dir}/plain/pool`;
    mkdirSync(quotaPool);
    mkdirSync(plainPool);
    mkdirSync(`${dir}/pods`);
    d = await startDriver({ dir, args: ['--pool', `eq=${quotaPool}`, '--pool', `ep=${plainPool}`] });
  });
  afterAll(async () => {
    await d?.stop();
    for (const t of ['e40', 'p10'].map((n) => `${dir}/pods/${n}`)) unmountAll(t);
    unmountAll(`${dir}/q`);
    unmountAll(`${dir}/plain`);
    for (const l of loops) l.detach();
    await cleanupDir(dir);
  });

  it('says which pool enforces sizes, and how to enable it on the one that does not', () => {
    const logs = d.logs();
    expect(logs).toContain(`ext4 project quotas on ${dir}/q`);
    expect(logs).toContain(`ext4 at ${dir}/plain has no project quotas on`);
    expect(logs).toContain('tune2fs -O project,quota');
    expect(logs).toContain('-o prjquota');
  });

  it('a 40 MiB volume: a container\'s root gets EDQUOT past it; writes within it succeed; stats and expansion follow the limit', async () => {
    const v = await create(d, 'e40', 'eq', 40);
    const target = `${dir}/pods/e40`;
    await publish(d, v.volume_id, target);
    expect(projectOnDisk(`${quotaPool}/e40`)).toBe(projectIdOf(quotaPool, 'e40'));
    const past = expectLimitAt(`${target}/f`, 40, 'EDQUOT', { dropSysResource: true });
    const s = await stats(d, v.volume_id, target);
    expect(s.total).toBe(BigInt(40 * MiB));
    expect(Number(s.used - BigInt(past.bytes))).toBeLessThan(MiB);

    await d.clients.controller.ControllerExpandVolume({ volume_id: v.volume_id, capacity_range: { required_bytes: String(60 * MiB) }, volume_capability: MOUNT_CAP });
    await d.clients.node.NodeExpandVolume({ volume_id: v.volume_id, volume_path: target, capacity_range: { required_bytes: String(60 * MiB) }, volume_capability: MOUNT_CAP });
    const more = fill(`${target}/g`, 30, { dropSysResource: true });
    expect(more.refused, more.stderr).toBe('EDQUOT');
    expect(more.bytes).toBeGreaterThanOrEqual(18 * MiB);
    expect((await stats(d, v.volume_id, target)).total).toBe(BigInt(60 * MiB));
  });

  it('the kernel exempts a writer with CAP_SYS_RESOURCE (the driver itself; a container lacks it)', () => {
    const target = `${dir}/pods/e40`;
    const r = fill(`${target}/root`, 5);
    expect(r.refused, r.stderr).toBeUndefined();
    sh('rm', '-f', `${target}/root`);
  });

  it('ext4 without project quotas keeps working, unenforced', async () => {
    const v = await create(d, 'p10', 'ep', 10);
    const target = `${dir}/pods/p10`;
    await publish(d, v.volume_id, target);
    const r = fill(`${target}/f`, 20, { dropSysResource: true });
    expect(r.refused, r.stderr).toBeUndefined();
    expect(readVolumeRecord(plainPool, 'p10')!.projectId).toBeUndefined();
    expect(existsSync(poolLayout(plainPool).projectIds)).toBe(false);
  });
});
