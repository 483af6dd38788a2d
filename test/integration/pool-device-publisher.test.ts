/**
 * The pool device publisher (dist/cmd/hpp-pool-device.js), run for real as root on loop devices:
 * it publishes a block device node with the device's major:minor, atomically, leaves a correct node
 * alone, replaces a stale one, refuses what is not a block device, and exits 0 on SIGTERM/SIGINT with
 * the node left in place. Then end to end with the daemon: a pool whose device node is not there yet
 * is not ready, and becomes ready (formatted XFS and mounted) once the publisher has run.
 *
 * Needs `npm run build` first (like the other integration tests, it runs the built code).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devString } from '../../src/system/loop.js';
import { mountAt, readMounts } from '../../src/system/mount.js';
import { MOUNT_CAP, ROOT, cleanupDir, expectCode, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';
import { makeLoopDevice, type TestLoop } from '../helpers/loopdev.js';

const PUBLISHER_JS = path.join(ROOT, 'dist/cmd/hpp-pool-device.js');

interface Publisher {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
  /** Send a signal and wait for the exit code. */
  signal(sig: NodeJS.Signals): Promise<number | null>;
}

const running = new Set<ChildProcess>();

function startPublisher(args: string[], env: NodeJS.ProcessEnv = {}): Publisher {
  return startPublisherWith(process.execPath, [PUBLISHER_JS, ...args], env);
}

function startPublisherWith(cmd: string, argv: string[], env: NodeJS.ProcessEnv = {}): Publisher {
  if (!existsSync(PUBLISHER_JS)) throw new Error(`${PUBLISHER_JS} is missing: run 'npm run build' before the tests`);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'debug', ...env } });
  running.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  return {
    child,
    output: () => out,
    exited,
    async signal(sig) {
      if (child.exitCode === null) child.kill(sig);
      return exited;
    },
  };
}

/** Run the publisher to completion (for the cases that must fail or print and exit). */
async function runPublisher(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; output: string }> {
  const p = startPublisher(args, env);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
  const code = await p.exited;
  clearTimeout(timer);
  return { code, output: p.output() };
}

async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000, detail: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${detail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The publisher logs this once it has published (or found the node right) and holds the device. */
const HOLDING = '"holding the pool device until SIGTERM"';

function rdevOf(p: string): string {
  return devString(statSync(p, { bigint: true }).rdev);
}

describe('pool device publisher (hpp-pool-device)', () => {
  let dir: string;
  let loop: TestLoop;

  beforeAll(() => {
    dir = scratchDir('pooldev');
    loop = makeLoopDevice(`${dir}/disk.img`, 64);
  });
  afterAll(async () => {
    for (const c of running) c.kill('SIGKILL');
    await cleanupDir(dir);
    loop?.detach();
  });

  it('publishes a block device node with the device major:minor, and exits 0 on SIGTERM leaving it in place', async () => {
    const publish = `${dir}/devices/a`;
    const p = startPublisher(['--device', loop.device, '--publish', publish]);
    await waitFor('the published node', () => (existsSync(publish) ? true : undefined), 10_000, p.output);
    const st = lstatSync(publish, { bigint: true });
    expect(st.isBlockDevice()).toBe(true);
    expect(st.rdev).toBe(statSync(loop.device, { bigint: true }).rdev);
    expect(Number(st.mode & 0o777n)).toBe(0o600);
    await waitFor('the publisher to hold the device', () => (p.output().includes(HOLDING) ? true : undefined), 10_000, p.output);
    expect(p.output()).toContain('"device published"');
    expect(p.output()).toContain(`"devId":"${rdevOf(loop.device)}"`);
    // mknod went through the exec helper into a temporary name that was renamed away.
    expect(p.output()).toMatch(/"cmd":"mknod -m 0600 [^"]*\/devices\/\.a\.tmp-\d+-[0-9a-f]+ b \d+ \d+"/);
    expect(readdirSync(`${dir}/devices`)).toEqual(['a']);
    // Still running: the PVC stays mapped only while a pod uses it.
    await new Promise((r) => setTimeout(r, 300));
    expect(p.child.exitCode).toBeNull();

    expect(await p.signal('SIGTERM')).toBe(0);
    expect(p.output()).toContain('the published node stays in place');
    expect(lstatSync(publish, { bigint: true }).rdev).toBe(statSync(loop.device, { bigint: true }).rdev);
  });

  it('leaves an identical node as it is when restarted (same inode), and exits 0 on SIGINT', async () => {
    const publish = `${dir}/devices/a`;
    const before = lstatSync(publish, { bigint: true });
    // Environment instead of flags.
    const p = startPublisher([], { POOL_DEVICE: loop.device, POOL_PUBLISH_PATH: publish });
    await waitFor('the publisher to hold the device', () => (p.output().includes(HOLDING) ? true : undefined), 10_000, p.output);
    expect(p.output()).toContain('device already published: node left as it is');
    expect(p.output()).not.toContain('"cmd":"mknod');
    const after = lstatSync(publish, { bigint: true });
    expect(after.ino).toBe(before.ino);
    expect(after.ctimeNs).toBe(before.ctimeNs);
    expect(await p.signal('SIGINT')).toBe(0);
    expect(existsSync(publish)).toBe(true);
  });

  it('replaces a stale node with other numbers (an earlier mapping or boot) atomically', async () => {
    const publish = `${dir}/devices/stale`;
    mkdirSync(`${dir}/devices`, { recursive: true });
    // 240-254 are block majors for local/experimental use: nothing on this host has 250:7.
    execFileSync('mknod', ['-m', '0600', publish, 'b', '250', '7']);
    // A temp node a killed publisher left behind is cleaned up too.
    execFileSync('mknod', ['-m', '0600', `${dir}/devices/.stale.tmp-1-deadbeef`, 'b', '250', '8']);
    const p = startPublisher(['--device', loop.device, '--publish', publish]);
    await waitFor('the publisher to hold the device', () => (p.output().includes(HOLDING) ? true : undefined), 10_000, p.output);
    expect(p.output()).toContain('replacing it');
    expect(p.output()).toContain('"was":"250:7"');
    expect(rdevOf(publish)).toBe(rdevOf(loop.device));
    expect(lstatSync(publish).isBlockDevice()).toBe(true);
    expect(readdirSync(`${dir}/devices`).filter((e) => e.startsWith('.'))).toEqual([]);
    expect(await p.signal('SIGTERM')).toBe(0);
  });

  it('fails with a clear message and a non-zero exit when --device is not a block device', async () => {
    writeFileSync(`${dir}/plain-file`, 'x');
    for (const [device, kind] of [
      [`${dir}/plain-file`, 'a regular file'],
      ['/dev/null', 'a character device'],
      [dir, 'a directory'],
    ] as const) {
      const publish = `${dir}/devices/notblock`;
      const r = await runPublisher(['--device', device, '--publish', publish]);
      expect(r.code, r.output).not.toBe(0);
      expect(r.code, r.output).not.toBeNull();
      expect(r.output).toContain(`hpp-pool-device: ${device} is ${kind}, not a block device`);
      expect(existsSync(publish)).toBe(false);
    }
  });

  it('fails clearly when the device is missing, and refuses to replace what is not a device node', async () => {
    const missing = await runPublisher(['--device', `${dir}/no-such-device`, '--publish', `${dir}/devices/missing`]);
    expect(missing.code).not.toBe(0);
    expect(missing.output).toContain(`device ${dir}/no-such-device does not exist`);

    writeFileSync(`${dir}/devices/taken`, 'admin data');
    const taken = await runPublisher(['--device', loop.device, '--publish', `${dir}/devices/taken`]);
    expect(taken.code).not.toBe(0);
    expect(taken.output).toContain(`${dir}/devices/taken is a regular file, not a device node this publisher made`);
    expect(lstatSync(`${dir}/devices/taken`).isFile()).toBe(true);
  });

  it('needs no privilege but CAP_MKNOD as root (what the pool device pod grants), and says so without it', async () => {
    // setpriv (util-linux) limits the bounding set, as a container runtime does with capabilities.drop: [ALL].
    const node = process.execPath;
    const onlyMknod = startPublisherWith('setpriv', ['--bounding-set=-all,+mknod', '--inh-caps=-all', '--', node, PUBLISHER_JS, '--device', loop.device, '--publish', `${dir}/devices/caps`]);
    await waitFor('the publisher to hold the device', () => (onlyMknod.output().includes(HOLDING) ? true : undefined), 10_000, onlyMknod.output);
    expect(rdevOf(`${dir}/devices/caps`)).toBe(rdevOf(loop.device));
    expect(await onlyMknod.signal('SIGTERM')).toBe(0);

    const none = startPublisherWith('setpriv', ['--bounding-set=-all', '--inh-caps=-all', '--', node, PUBLISHER_JS, '--device', loop.device, '--publish', `${dir}/devices/nocaps`]);
    expect(await none.exited).not.toBe(0);
    expect(none.output()).toMatch(/cannot create a device node in .*: .*Operation not permitted.*CAP_MKNOD/);
    expect(existsSync(`${dir}/devices/nocaps`)).toBe(false);
    expect(readdirSync(`${dir}/devices`).filter((e) => e.startsWith('.nocaps'))).toEqual([]);
  });

  it('usage: required flags (exit 2), --help, --version', async () => {
    const none = await runPublisher([]);
    expect(none.code).toBe(2);
    expect(none.output).toContain('--device (or env POOL_DEVICE) is required');
    expect(none.output).toContain('Usage: hpp-pool-device');
    const noPublish = await runPublisher(['--device', loop.device]);
    expect(noPublish.code).toBe(2);
    expect(noPublish.output).toContain('--publish (or env POOL_PUBLISH_PATH) is required');
    const unknown = await runPublisher(['--device', loop.device, '--publish', `${dir}/devices/x`, '--force']);
    expect(unknown.code).toBe(2);
    const help = await runPublisher(['--help']);
    expect(help.code).toBe(0);
    expect(help.output).toContain('POOL_PUBLISH_PATH');
    const version = await runPublisher(['--version']);
    expect(version.code).toBe(0);
    expect(version.output).toMatch(/^hpp-pool-device \d+\.\d+\.\d+/);
  });
});

describe('pool device publisher with the daemon (end to end)', () => {
  let dir: string;
  let loop: TestLoop;
  let d: DriverProcess | undefined;
  let pub: Publisher | undefined;

  beforeAll(() => {
    dir = scratchDir('pooldev-e2e');
    // mkfs.xfs wants at least 300 MiB.
    loop = makeLoopDevice(`${dir}/disk.img`, 512);
  });
  afterAll(async () => {
    await pub?.signal('SIGTERM');
    await d?.stop();
    for (const c of running) c.kill('SIGKILL');
    await cleanupDir(dir);
    loop?.detach();
  });

  const probe = async () => (await d!.clients.identity.Probe({})).ready.value as boolean;

  it('a pool waits for its device node, then is formatted XFS and mounted once the publisher has run', async () => {
    const mnt = `${dir}/mnt`;
    const devices = `${dir}/devices`;
    // In the cluster the pool path is a DirectoryOrCreate hostPath of the DaemonSet: it exists, empty.
    mkdirSync(mnt);
    d = await startDriver({ dir, args: ['--pool', `p=${mnt}:device=${devices}/p`] });

    expect(await probe()).toBe(false);
    expect(d.logs()).toContain(`device ${devices}/p is not there`);
    await expectCode(
      d.clients.controller.CreateVolume({ name: 'before', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: '1048576' }, parameters: { storagePool: 'p' } }),
      'UNAVAILABLE',
    );
    expect(mountAt(await readMounts(), mnt)).toBeUndefined();

    pub = startPublisher(['--device', loop.device, '--publish', `${devices}/p`]);
    // The supervisor tries the pool as soon as its device node appears (Probe only reads the state).
    const started = Date.now();
    await waitFor('Probe ready=true', async () => ((await probe()) ? true : undefined), 15_000, () => `${d!.logs()}\n${pub!.output()}`);
    expect(Date.now() - started).toBeLessThan(15_000);

    const m = mountAt(await readMounts(), mnt);
    expect(m?.fsType).toBe('xfs');
    expect(m?.device).toBe(rdevOf(loop.device));
    await d.waitForLog('formatted blank device as XFS');
    const res = await d.clients.controller.CreateVolume({ name: 'after', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: '1048576' }, parameters: { storagePool: 'p' } });
    expect(res.volume.volume_id).toBe('test-node:p:after');

    // The pool pod stops: the node stays, the daemon keeps its mount (the kernel holds the device).
    expect(await pub.signal('SIGTERM')).toBe(0);
    pub = undefined;
    expect(lstatSync(`${devices}/p`).isBlockDevice()).toBe(true);
    expect(await probe()).toBe(true);
    expect(mountAt(await readMounts(), mnt)?.fsType).toBe('xfs');

    // A daemon restart finds the pool again through the node left in place (no reformat).
    expect(await d.stop()).toBe(0);
    d = await startDriver({ dir, args: ['--pool', `p=${mnt}:device=${devices}/p`] });
    expect(await probe()).toBe(true);
    expect(d.logs()).not.toContain('formatted blank device as XFS');
    expect((await d.clients.controller.ListVolumes({})).entries.map((e: { volume: { volume_id: string } }) => e.volume.volume_id)).toEqual(['test-node:p:after']);
    expect(await d.stop()).toBe(0);
    d = undefined;
  });

  // A device pool creates its mount point itself: what it waits for is its device, so it must come in
  // although the directory did not exist.
  it('a pool whose mount point does not exist yet also becomes ready once its device is published', async () => {
    const mnt = `${dir}/mnt-missing`;
    const devices = `${dir}/devices2`;
    const loop2 = makeLoopDevice(`${dir}/disk2.img`, 512);
    try {
      d = await startDriver({ dir, args: ['--pool', `q=${mnt}:device=${devices}/q`] });
      expect(await probe()).toBe(false);
      pub = startPublisher(['--device', loop2.device, '--publish', `${devices}/q`]);
      await waitFor('Probe ready=true', async () => ((await probe()) ? true : undefined), 6_000, () => d!.logs());
      expect(mountAt(await readMounts(), mnt)?.fsType).toBe('xfs');
    } finally {
      await pub?.signal('SIGTERM');
      pub = undefined;
      await d?.stop();
      d = undefined;
      await cleanupDir(mnt);
      loop2.detach();
    }
  });
});
