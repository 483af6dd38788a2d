// A block volume's publication must always reach that volume's image. The kernel only marks a loop
// device for detaching (AUTOCLEAR) while another process holds it open, and keeps showing the old image
// as its backing file until the last opener closes it; after that the device backs nothing and can be
// given to any other image. These tests hold devices open from another process, detach them behind the
// daemon's back and re-attach them to other files, and check that no target ever reads another
// volume's bytes.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_CAP, cleanupDir, expectCode, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';
import { blockImagePath } from '../../src/format/layout.js';

const MiB = 1024 * 1024;

function fill(byte: number): Buffer {
  return Buffer.alloc(64 * 1024, byte);
}

function writeAt(dev: string, data: Buffer): void {
  const fd = openSync(dev, 'r+');
  try {
    writeSync(fd, data, 0, data.length, 0);
  } finally {
    closeSync(fd);
  }
}

function readAt(dev: string, size = 64 * 1024): Buffer {
  const fd = openSync(dev, 'r');
  const b = Buffer.alloc(size);
  try {
    readSync(fd, b, 0, size, 0);
  } finally {
    closeSync(fd);
  }
  return b;
}

/** The first bytes of an image file, read from the file itself (not through any device). */
function imageHead(file: string): Buffer {
  return readAt(file);
}

/** /dev/loopN that the bind mount at `target` is the node of. */
function deviceOf(target: string): string {
  const rdev = statSync(target).rdev;
  const major = (rdev >> 8) & 0xfff;
  const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  const name = path.basename(execFileSync('readlink', ['-f', `/sys/dev/block/${major}:${minor}`]).toString().trim());
  return `/dev/${name}`;
}

function sysfs(dev: string, attr: string): string | undefined {
  try {
    return readFileSync(`/sys/block/${path.basename(dev)}/loop/${attr}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Another process (a backup agent, blkid, udev) holding `dev` open until release(). */
async function holdOpen(dev: string): Promise<{ child: ChildProcess; release(): Promise<void> }> {
  const child = spawn(process.execPath, ['-e', "require('fs').openSync(process.argv[1], 'r'); console.log('open'); process.stdin.resume()", dev], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', () => resolve());
    child.on('exit', (code) => reject(new Error(`holder exited with ${code}`)));
  });
  const exited = new Promise((r) => child.on('exit', r));
  return {
    child,
    async release() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

async function waitUntil(cond: () => boolean, ms = 5_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

// Both ways of reading a loop device's status: the addon's LOOP_GET_STATUS64, and losetup without it.
describe.each(['mount(2)', 'tools'])('a block publication reaches its own image, whatever happens to its loop device (%s)', (backend) => {
  let dir: string;
  let pool: string;
  let d: DriverProcess | undefined;
  const holders: Array<{ release(): Promise<void> }> = [];
  const decoys: string[] = [];

  beforeAll(() => {
    dir = scratchDir('loopid');
    pool = `${dir}/pool`;
    mkdirSync(pool);
    mkdirSync(`${dir}/pods`);
  });
  const expectBackend = async (drv: DriverProcess) => expect(await drv.waitForLog('"serving CSI"')).toContain(`"mounts":"${backend === 'tools' ? 'mount(8) (HPP_MOUNT_BACKEND=tools)' : 'mount(2)'}"`);
  afterEach(async () => {
    for (const h of holders.splice(0)) await h.release();
    await d?.stop();
    d = undefined;
  });
  afterAll(async () => {
    await cleanupDir(dir);
  });

  const start = async () => (d = await startDriver({ dir, args: ['--pool', `default=${pool}`], env: backend === 'tools' ? { HPP_MOUNT_BACKEND: 'tools' } : {} }));
  const image = (name: string) => path.join(pool, blockImagePath(name));

  async function blockVolume(drv: DriverProcess, name: string): Promise<string> {
    const { volume } = await drv.clients.controller.CreateVolume({ name, volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(8 * MiB) } });
    return volume.volume_id as string;
  }

  /** Attach a file of our own to exactly `dev` (another user of the machine taking the free number). */
  function attachDecoy(dev: string, byte: number): boolean {
    const file = `${dir}/decoy-${decoys.length}.img`;
    execFileSync('truncate', ['-s', '8M', file]);
    writeAt(file, fill(byte));
    try {
      execFileSync('losetup', [dev, file], { stdio: 'ignore' });
    } catch {
      return false; // somebody else's test took the number first: the device then backs nothing of ours
    }
    decoys.push(dev);
    return true;
  }

  it('never reuses a device that is detaching, and never hands it to another volume', async () => {
    const drv = await start();
    await expectBackend(drv);
    const a = await blockVolume(drv, 'vol-a');
    const b = await blockVolume(drv, 'vol-b');
    const tA = `${dir}/pods/a/dev`;
    const tB = `${dir}/pods/b/dev`;
    await drv.clients.node.NodePublishVolume({ volume_id: a, target_path: tA, volume_capability: BLOCK_CAP });
    writeAt(tA, fill(0xaa));
    const first = deviceOf(tA);
    const holder = await holdOpen(first);
    holders.push(holder);

    await drv.clients.node.NodeUnpublishVolume({ volume_id: a, target_path: tA });
    // The kernel could not detach it: it is marked for removal and still shows A's image.
    expect(sysfs(first, 'autoclear')).toBe('1');
    await drv.waitForLog(new RegExp(`${first}.*held open|held open.*${first}`));
    expect(drv.logs()).toContain(`"pid":${holder.child.pid}`);

    await drv.clients.node.NodePublishVolume({ volume_id: a, target_path: tA, volume_capability: BLOCK_CAP });
    const second = deviceOf(tA);
    expect(second).not.toBe(first);
    expect(sysfs(second, 'autoclear')).toBe('0');

    await holder.release();
    await waitUntil(() => sysfs(first, 'backing_file') === undefined);

    await drv.clients.node.NodePublishVolume({ volume_id: b, target_path: tB, volume_capability: BLOCK_CAP });
    writeAt(tB, fill(0xbb));
    expect(readAt(tA).equals(fill(0xaa))).toBe(true);
    writeAt(tA, fill(0xa1));
    expect(readAt(tB).equals(fill(0xbb))).toBe(true);
    expect(imageHead(image('vol-b')).equals(fill(0xbb))).toBe(true);
    expect(imageHead(image('vol-a')).equals(fill(0xa1))).toBe(true);

    for (const [id, t] of [[a, tA], [b, tB]]) await drv.clients.node.NodeUnpublishVolume({ volume_id: id, target_path: t });
    for (const id of [a, b]) await drv.clients.controller.DeleteVolume({ volume_id: id });
  });

  it('repairs on start a target left bound to a device that no longer backs its image', async () => {
    let drv = await start();
    const a = await blockVolume(drv, 'vol-c');
    const tA = `${dir}/pods/c/dev`;
    await drv.clients.node.NodePublishVolume({ volume_id: a, target_path: tA, volume_capability: BLOCK_CAP });
    writeAt(tA, fill(0xcc));
    const dev = deviceOf(tA);
    await drv.kill();
    // Behind the daemon's back the device is detached and its number taken by another file.
    execFileSync('losetup', ['-d', dev]);
    const decoy = attachDecoy(dev, 0xdd);
    if (decoy) expect(readAt(tA).equals(fill(0xdd))).toBe(true);

    drv = await start();
    await drv.waitForLog('re-made');
    expect(readAt(tA).equals(fill(0xcc))).toBe(true);
    if (decoy) expect(deviceOf(tA)).not.toBe(dev);
    // kubelet's retry of the same publish is then answered OK, not ALREADY_EXISTS.
    await drv.clients.node.NodePublishVolume({ volume_id: a, target_path: tA, volume_capability: BLOCK_CAP });
    await drv.clients.node.NodeUnpublishVolume({ volume_id: a, target_path: tA });
    await drv.clients.controller.DeleteVolume({ volume_id: a });
    if (decoy) expect(readAt(`${dir}/decoy-${decoys.length - 1}.img`).equals(fill(0xdd))).toBe(true);
  });

  it('reports a target whose device was taken from it as abnormal, and the publish retry repairs it', async () => {
    const drv = await start();
    const a = await blockVolume(drv, 'vol-e');
    const tA = `${dir}/pods/e/dev`;
    await drv.clients.node.NodePublishVolume({ volume_id: a, target_path: tA, volume_capability: BLOCK_CAP });
    writeAt(tA, fill(0xee));
    const dev = deviceOf(tA);
    execFileSync('losetup', ['-d', dev]);
    attachDecoy(dev, 0x11);

    const stats = await drv.clients.node.NodeGetVolumeStats({ volume_id: a, volume_path: tA });
    expect(stats.volume_condition.abnormal).toBe(true);
    expect(stats.volume_condition.message).toContain(dev);

    await drv.clients.node.NodePublishVolume({ volume_id: a, target_path: tA, volume_capability: BLOCK_CAP });
    expect(readAt(tA).equals(fill(0xee))).toBe(true);
    const healthy = await drv.clients.node.NodeGetVolumeStats({ volume_id: a, volume_path: tA });
    expect(healthy.volume_condition.abnormal).toBe(false);
    await drv.clients.node.NodeUnpublishVolume({ volume_id: a, target_path: tA });
    await drv.clients.controller.DeleteVolume({ volume_id: a });
  });

  it('leaves a foreign device mounted at an unrecorded target alone', async () => {
    const drv = await start();
    const a = await blockVolume(drv, 'vol-f');
    const t = `${dir}/pods/f/dev`;
    mkdirSync(path.dirname(t), { recursive: true });
    const file = `${dir}/foreign.img`;
    execFileSync('truncate', ['-s', '8M', file]);
    const foreign = execFileSync('losetup', ['--find', '--show', file]).toString().trim();
    decoys.push(foreign);
    closeSync(openSync(t, 'w'));
    execFileSync('mount', ['--bind', foreign, t]);
    await expectCode(drv.clients.node.NodePublishVolume({ volume_id: a, target_path: t, volume_capability: BLOCK_CAP }), 'ALREADY_EXISTS');
    expect(deviceOf(t)).toBe(foreign);
    execFileSync('umount', [t]);
    await drv.clients.controller.DeleteVolume({ volume_id: a });
  });
});
