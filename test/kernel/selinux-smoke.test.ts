// SELinux in the kernel VM (hack/kernel-vm/run --selinux): Debian's default policy loads and is
// enforced, and labels on a filesystem of our own (XFS on a loop device, mounted without context=)
// decide what a confined process may write. The confined domain is svirt_t, libvirt's for a VM and
// the closest Debian's policy has to container_t (Debian's refpolicy has no container module: no
// container_t, no container_file_t); its files are svirt_image_t, and like container_t it is
// MCS-constrained: a process of categories c1,c2 may write only files of the same categories.
// The policy is Debian's plus hack/kernel-vm/selinux/hpp_kernel_vm.cil, which only lets the guest's
// processes (kernel_t: no init labels them) start svirt_t as libvirtd would.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeLoopDevice, sh, unmountAll, type TestLoop } from '../helpers/loopdev.js';
import { tryRun } from './lib.js';

const selinux = process.env.HPP_KERNEL_SELINUX === '1';
const CONFINED = 'system_u:system_r:svirt_t:s0:c1,c2';

const label = (p: string) => sh('stat', ['-c', '%C', p]).trim();

describe.runIf(selinux)('SELinux under the kernel VM', () => {
  let dir: string;
  let mnt: string;
  let loop: TestLoop | undefined;

  beforeAll(() => {
    // Everything the test loads before enforcing: the modules are unlabeled files (9p) and an
    // enforcing policy refuses kernel_t loading them.
    for (const m of ['xfs', 'loop']) sh('modprobe', [m]);
    sh('load_policy', ['-i']);
    dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-kernel-selinux-'));
    mnt = `${dir}/mnt`;
    mkdirSync(mnt);
  });

  afterAll(() => {
    // Permissive again whatever happened: vitest still has to write its report.
    tryRun('setenforce', ['0']);
    if (mnt) unmountAll(mnt);
    loop?.detach();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("has Debian's default policy loaded, permissive until setenforce 1", () => {
    expect(readFileSync('/sys/fs/selinux/policyvers', 'utf8').trim()).toMatch(/^\d+$/);
    expect(sh('getenforce', []).trim()).toBe('Permissive');
    // This process: kernel_t, the initial SID of everything that ran before the policy.
    expect(readFileSync('/proc/self/attr/current', 'utf8').replace(/\0/g, '')).toBe('system_u:system_r:kernel_t:s0');
    const modules = sh('semodule', ['-l']).split('\n');
    expect(modules).toContain('virt');
    expect(modules).toContain('hpp_kernel_vm');
  });

  it('svirt_t:c1,c2 writes in a svirt_image_t:c1,c2 dir only: denied in an unlabeled one and in one of other categories', () => {
    loop = makeLoopDevice(`${dir}/xfs.img`, 320);
    sh('mkfs.xfs', ['-q', loop.device]);
    sh('mount', [loop.device, mnt]);
    // A fresh filesystem's inodes have no security.selinux: unlabeled_t, and so is what is made in it.
    expect(label(mnt)).toBe('system_u:object_r:unlabeled_t:s0');
    mkdirSync(`${mnt}/unlabeled`);
    // The root as a mount point's (svirt_t may search any file type's dirs, but not unlabeled_t's).
    sh('chcon', ['system_u:object_r:mnt_t:s0', mnt]);
    for (const [d, ctx] of [
      ['mine', 'system_u:object_r:svirt_image_t:s0:c1,c2'],
      ['theirs', 'system_u:object_r:svirt_image_t:s0:c3,c4'],
    ] as const) {
      mkdirSync(`${mnt}/${d}`);
      sh('chcon', [ctx, `${mnt}/${d}`]);
    }
    // svirt_t's entry point is qemu_exec_t: a static busybox with that label on the XFS.
    mkdirSync(`${mnt}/bin`);
    copyFileSync('/bin/busybox', `${mnt}/bin/busybox`);
    sh('chcon', ['system_u:object_r:qemu_exec_t:s0', `${mnt}/bin/busybox`]);
    expect(label(`${mnt}/unlabeled`)).toBe('system_u:object_r:unlabeled_t:s0');

    sh('setenforce', ['1']);
    try {
      expect(sh('getenforce', []).trim()).toBe('Enforcing');
      // From the XFS root (relative paths): the 9p and overlay dirs above it are unlabeled_t too.
      const write = (d: string) =>
        tryRun('runcon', [CONFINED, `${mnt}/bin/busybox`, 'sh', '-c', `cat /proc/self/attr/current; echo; echo hi > ${d}/f`], mnt);
      const mine = write('mine');
      expect(mine.status, mine.out).toBe(0);
      expect(mine.out).toContain(CONFINED);
      const unlabeled = write('unlabeled');
      expect(unlabeled.status).not.toBe(0);
      expect(unlabeled.out).toMatch(/Permission denied/);
      const theirs = write('theirs');
      expect(theirs.status).not.toBe(0);
      expect(theirs.out).toMatch(/Permission denied/);
      // The same runcon against a plain binary of the host: no entry point into svirt_t.
      const entry = tryRun('runcon', [CONFINED, '/bin/true']);
      expect(entry.status).not.toBe(0);
    } finally {
      sh('setenforce', ['0']);
    }
    // The file the confined process made is of its type and categories.
    expect(label(`${mnt}/mine/f`)).toBe('system_u:object_r:svirt_image_t:s0:c1,c2');
    expect(readFileSync(`${mnt}/mine/f`, 'utf8')).toBe('hi\n');
    unmountAll(mnt);
  });
});
