// The driver on a host with SELinux (hack/kernel-vm/run --selinux: Debian's default policy, loaded
// here): every volume it makes — a Filesystem volume's directory and all in it, a KubeVirt disk.img,
// a Block volume's image, a restore from a snapshot, a clone — carries the context containers may use
// (container_file_t at s0, as HPP labels them), and with the policy enforced a confined process
// (container_t, categories c1,c2) can write a published volume and cannot write an unlabelled
// directory of the same filesystem. container_t and container_file_t are aliases of svirt_t and
// svirt_image_t in the test policy (hack/kernel-vm/selinux/hpp_kernel_vm.cil: Debian has no
// container-selinux), so a label is compared with the one the policy gives a file chcon'ed to
// container_file_t, never with a spelling. The host without SELinux: project-quota.test.ts.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTAINER_FILE_CONTEXT } from '../../src/system/selinux.js';
import { BLOCK_CAP, MOUNT_CAP, cleanupDir, readVolumeRecord, scratchDir, startDriver, type DriverProcess, type Msg } from '../helpers/driver.js';
import { makeLoopDevice, unmountAll, type TestLoop } from '../helpers/loopdev.js';
import { MiB, sh, tryRun } from './lib.js';

const selinux = process.env.HPP_KERNEL_SELINUX === '1';
const CONFINED = 'system_u:system_r:container_t:s0:c1,c2';

const label = (p: string) => sh('stat', '-c', '%C', p).trim();

describe.runIf(selinux)('volumes on a host with SELinux', () => {
  let dir: string;
  let mnt: string;
  let pool: string;
  let loop: TestLoop | undefined;
  let d: DriverProcess;
  /** What the policy makes of container_file_t:s0 (the canonical name of the alias). */
  let containerFile: string;
  const targets: string[] = [];

  const create = async (name: string, extra: Msg = {}): Promise<string> => {
    const { volume } = await d.clients.controller.CreateVolume({
      name,
      volume_capabilities: [MOUNT_CAP],
      capacity_range: { required_bytes: String(20 * MiB) },
      parameters: { storagePool: 's' },
      ...extra,
    });
    return volume.volume_id as string;
  };
  const dataOf = (name: string) => path.join(pool, readVolumeRecord(pool, name)!.data as string);
  const publish = async (id: string, name: string): Promise<string> => {
    const target = `${dir}/pods/${name}`;
    await d.clients.node.NodePublishVolume({ volume_id: id, target_path: target, volume_capability: MOUNT_CAP });
    targets.push(target);
    return target;
  };

  beforeAll(async () => {
    sh('load_policy', '-i');
    dir = scratchDir('kselinux');
    mnt = `${dir}/xfs`;
    mkdirSync(mnt);
    mkdirSync(`${dir}/pods`);
    loop = makeLoopDevice(`${dir}/xfs.img`, 400);
    sh('mkfs.xfs', '-q', loop.device);
    // No context= mount option: the labels are the files' own (a fresh XFS: unlabeled_t).
    sh('mount', loop.device, mnt);
    pool = `${mnt}/pool`;
    mkdirSync(pool);
    mkdirSync(`${mnt}/unlabelled`);
    writeFileSync(`${mnt}/reference`, '');
    sh('chcon', CONTAINER_FILE_CONTEXT, `${mnt}/reference`);
    containerFile = label(`${mnt}/reference`);
    // The confined process's entry point: a static busybox of qemu_exec_t (svirt_t's, so container_t's).
    mkdirSync(`${mnt}/bin`);
    copyFileSync('/bin/busybox', `${mnt}/bin/busybox`);
    sh('chcon', 'system_u:object_r:qemu_exec_t:s0', `${mnt}/bin/busybox`);
    d = await startDriver({ dir, args: ['--pool', `s=${pool}`] });
  });
  afterAll(async () => {
    tryRun('setenforce', ['0']);
    await d?.stop();
    for (const t of targets) unmountAll(t);
    unmountAll(mnt);
    loop?.detach();
    if (dir) await cleanupDir(dir);
  });

  it('knows SELinux is on, and container_file_t is a type of the loaded policy', () => {
    expect(d.logs()).toContain('SELinux is on: new, restored and cloned volumes are labelled for containers');
    expect(containerFile).toMatch(/^system_u:object_r:\w+:s0$/);
    expect(label(`${mnt}/unlabelled`)).toBe('system_u:object_r:unlabeled_t:s0');
    expect(label(pool)).toBe('system_u:object_r:unlabeled_t:s0');
  });

  it('labels a Filesystem volume, a disk.img and a Block volume image for containers', async () => {
    await create('fs1');
    expect(label(dataOf('fs1'))).toBe(containerFile);
    await create('vm1', { parameters: { storagePool: 's', createDiskImage: 'true' } });
    expect(label(dataOf('vm1'))).toBe(containerFile);
    expect(label(`${dataOf('vm1')}/disk.img`)).toBe(containerFile);
    await create('blk1', { volume_capabilities: [BLOCK_CAP] });
    expect(label(dataOf('blk1'))).toBe(containerFile);
    // The pool itself is the admin's: left as it was.
    expect(label(pool)).toBe('system_u:object_r:unlabeled_t:s0');
  });

  it('labels a restore and a clone, files copied in them included', async () => {
    const target = await publish('test-node:s:fs1', 'fs1');
    mkdirSync(`${target}/sub`);
    writeFileSync(`${target}/sub/data`, 'payload\n');
    // Written by root outside a container: of the parent's type, but shows the copies are relabelled
    // whatever the source's files carry.
    sh('chcon', '-R', 'system_u:object_r:tmp_t:s0', `${target}/sub`);
    const { snapshot } = await d.clients.controller.CreateSnapshot({ source_volume_id: 'test-node:s:fs1', name: 'snap1' });
    await create('restored', { volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } } });
    await create('cloned', { volume_content_source: { volume: { volume_id: 'test-node:s:fs1' } } });
    for (const name of ['restored', 'cloned']) {
      const data = dataOf(name);
      for (const p of [data, `${data}/sub`, `${data}/sub/data`]) expect(label(p), p).toBe(containerFile);
      expect(readFileSync(`${data}/sub/data`, 'utf8')).toBe('payload\n');
    }
    await create('vm-clone', { volume_content_source: { volume: { volume_id: 'test-node:s:vm1' } } });
    expect(label(`${dataOf('vm-clone')}/disk.img`)).toBe(containerFile);
    await create('blk-clone', { volume_capabilities: [BLOCK_CAP], volume_content_source: { volume: { volume_id: 'test-node:s:blk1' } } });
    expect(label(dataOf('blk-clone'))).toBe(containerFile);
  });

  it('enforcing: a confined container process writes its published volume, and is denied an unlabelled directory', async () => {
    const target = await publish('test-node:s:restored', 'restored');
    // Relative paths from the directory itself: the directories above (9p, tmpfs) have no labels it may search.
    const write = (cwd: string) =>
      tryRun('runcon', [CONFINED, `${mnt}/bin/busybox`, 'sh', '-c', 'cat /proc/self/attr/current; echo; cat sub/data 2>&1; echo hi > f'], cwd);
    sh('setenforce', '1');
    let inVolume: ReturnType<typeof tryRun>;
    let unlabelled: ReturnType<typeof tryRun>;
    try {
      expect(sh('getenforce').trim()).toBe('Enforcing');
      inVolume = write(target);
      unlabelled = write(`${mnt}/unlabelled`);
    } finally {
      sh('setenforce', '0');
    }
    expect(inVolume.status, inVolume.out).toBe(0);
    expect(inVolume.out).toContain('svirt_t:s0:c1,c2');
    expect(inVolume.out).toContain('payload');
    expect(readFileSync(`${target}/f`, 'utf8')).toBe('hi\n');
    expect(unlabelled.status, unlabelled.out).not.toBe(0);
    expect(unlabelled.out).toMatch(/Permission denied/);
  });
});
