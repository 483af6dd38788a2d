// The kernel tier's own check: that it runs under Debian's stock kernel in the VM of
// hack/kernel-vm/run, and that what this tier is for works there: XFS project quotas (accounting and
// enforcement on, a limit refused with ENOSPC) and ext4 project quotas (EDQUOT, and only without
// CAP_SYS_RESOURCE). Run by `npm run test:kernel`; not part of `npm test` (vitest.config.ts).
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeLoopDevice, sh, unmountAll, type TestLoop } from '../helpers/loopdev.js';
import { tryRun, vmDisks } from './lib.js';

/** `cmd args` as root without CAP_SYS_RESOURCE, as a container's root normally is. */
const NO_SYS_RESOURCE = ['--bounding-set=-sys_resource', '--inh-caps=-sys_resource'];

const inVm = process.env.HPP_KERNEL_VM === '1';

describe('the kernel VM', () => {
  let dir: string;
  const loops: TestLoop[] = [];
  const mounts: string[] = [];

  beforeAll(() => {
    expect(inVm, 'run by `npm run test:kernel` (hack/kernel-vm/run sets HPP_KERNEL_VM=1)').toBe(true);
    for (const m of ['xfs', 'ext4', 'quota_v2', 'loop']) sh('modprobe', [m]);
    dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-kernel-smoke-'));
  });

  afterAll(() => {
    for (const m of mounts.reverse()) unmountAll(m);
    for (const l of loops) l.detach();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("is Debian's stock kernel, the one hack/kernel-vm/fetch got", () => {
    expect(process.env.HPP_KERNEL_VERSION).toMatch(/-amd64$/);
    expect(os.release()).toBe(process.env.HPP_KERNEL_VERSION);
    // Debian's /proc/version names the package version: "... Debian 6.1.192-3 (2025-...)".
    expect(readFileSync('/proc/version', 'utf8')).toContain(`Debian ${process.env.HPP_KERNEL_PACKAGE_VERSION}`);
  });

  it('has xfs and ext4 (modprobe from the fetched modules tree)', () => {
    const fs = readFileSync('/proc/filesystems', 'utf8')
      .split('\n')
      .map((l) => l.trim().split(/\s+/).pop());
    expect(fs).toContain('xfs');
    expect(fs).toContain('ext4');
  });

  it('mounts XFS with prjquota: accounting and enforcement on, a project limit refused with ENOSPC', () => {
    const l = makeLoopDevice(`${dir}/xfs.img`, 320);
    loops.push(l);
    const mnt = `${dir}/xfs`;
    mkdirSync(mnt);
    sh('mkfs.xfs', ['-q', l.device]);
    sh('mount', ['-o', 'prjquota', l.device, mnt]);
    mounts.push(mnt);
    const state = sh('xfs_quota', ['-x', '-c', 'state -p', mnt]);
    expect(state).toMatch(/Accounting: ON/);
    expect(state).toMatch(/Enforcement: ON/);

    // Project 42 on a directory with a 4 MiB hard limit: XFS refuses the overrun with ENOSPC (not
    // EDQUOT), and refuses root too.
    mkdirSync(`${mnt}/p`);
    sh('xfs_quota', ['-x', '-c', `project -s -p ${mnt}/p 42`, mnt]);
    sh('xfs_quota', ['-x', '-c', 'limit -p bhard=4m 42', mnt]);
    const w = tryRun('dd', ['if=/dev/zero', `of=${mnt}/p/f`, 'bs=1M', 'count=8', 'conv=fsync']);
    expect(w.status).not.toBe(0);
    expect(w.out).toMatch(/No space left on device/);

    unmountAll(mnt);
    mounts.pop();
  });

  it('mounts ext4 (mkfs -O quota,project) with prjquota on a scratch disk: EDQUOT without CAP_SYS_RESOURCE only', () => {
    // The second disk: project-quota.test.ts, running beside this file, takes the first for its device pool.
    const disk = vmDisks()[1] ?? '';
    expect(disk, 'hack/kernel-vm/run --disk SIZE --disk SIZE gives the guest two blank disks').toMatch(/^\/dev\/vd[a-z]$/);
    const mnt = `${dir}/ext4`;
    mkdirSync(mnt);
    sh('mkfs.ext4', ['-q', '-F', '-O', 'quota,project', disk]);
    sh('mount', ['-o', 'prjquota', disk, mnt]);
    mounts.push(mnt);
    expect(sh('findmnt', ['-n', '-o', 'OPTIONS', mnt])).toMatch(/prjquota/);

    // Project 7 with a 4 MiB hard limit (setquota counts 1 KiB blocks).
    mkdirSync(`${mnt}/p`);
    sh('chattr', ['-p', '7', '+P', `${mnt}/p`]);
    sh('setquota', ['-P', '7', '0', '4096', '0', '0', mnt]);
    const dd = (f: string) => ['if=/dev/zero', `of=${mnt}/p/${f}`, 'bs=1M', 'count=8', 'conv=fsync'];
    const confined = tryRun('setpriv', [...NO_SYS_RESOURCE, 'dd', ...dd('a')]);
    expect(confined.status).not.toBe(0);
    expect(confined.out).toMatch(/Disk quota exceeded/);
    // Root with CAP_SYS_RESOURCE is exempt from ext4 quotas.
    const exempt = tryRun('dd', dd('b'));
    expect(exempt.status, exempt.out).toBe(0);

    unmountAll(mnt);
    mounts.pop();
  });
});
