// Bind mounts made in-process (mount(2)/umount2(2) through src/native) behave like mount(8)'s: same
// per-mount options for every flag combination a publish can ask for, errors that name the call and
// the errno, and the statx mount-point test agreeing with /proc/self/mountinfo.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SyscallError, ToolError } from '../../src/errors.js';
import { bindMount, mountAt, mountedAt, parseMountinfo, readMounts, unmount } from '../../src/system/mount.js';
import { mountBackend } from '../../src/system/native-mount.js';
import { MOUNT_CAP, cleanupDir, scratchDir, startDriver } from '../helpers/driver.js';

let dir: string;
let src: string;
let n = 0;

function optionsAt(p: string): string[] {
  const m = mountAt(parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')), p);
  if (!m) throw new Error(`nothing mounted at ${p}`);
  return [...m.options].sort();
}

function freshTarget(): string {
  const t = path.join(dir, 'targets', `t${n++}`);
  mkdirSync(t, { recursive: true });
  return t;
}

beforeAll(() => {
  dir = scratchDir('mount-backend');
  // The source lives on a tmpfs mounted nosuid,nodev: a bind mount inherits those, and a remount must keep them.
  src = path.join(dir, 'srcfs');
  mkdirSync(src);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,nosuid,nodev', 'hpp-test', src]);
  mkdirSync(path.join(src, 'vol'));
  writeFileSync(path.join(src, 'vol', 'file'), 'data');
});

afterEach(async () => {
  for (const m of (await readMounts()).filter((x) => x.mountPoint.startsWith(path.join(dir, 'targets'))).reverse()) {
    execFileSync('umount', [m.mountPoint]);
  }
});

afterAll(async () => {
  await cleanupDir(dir);
});

describe('mount backend', () => {
  it('is the in-process one (the addon is built by npm ci); the fallback is only for builds without it', () => {
    expect(mountBackend.kind, mountBackend.kind === 'tools' ? mountBackend.why : '').toBe('syscall');
  });

  const cases: Array<{ readOnly: boolean; flags: string[] }> = [
    { readOnly: false, flags: [] },
    { readOnly: true, flags: [] },
    { readOnly: true, flags: ['noexec'] },
    { readOnly: false, flags: ['noatime', 'nodiratime'] },
    { readOnly: false, flags: ['suid', 'dev'] },
    { readOnly: true, flags: ['strictatime', 'noexec'] },
  ];
  for (const c of cases) {
    it(`gives the same mount options as mount(8): readOnly=${c.readOnly} flags=[${c.flags.join(',')}]`, async () => {
      const ours = freshTarget();
      const theirs = freshTarget();
      await bindMount(path.join(src, 'vol'), ours, c);
      execFileSync('mount', ['--bind', path.join(src, 'vol'), theirs]);
      if (c.readOnly || c.flags.length > 0) {
        execFileSync('mount', ['-o', ['remount', 'bind', ...(c.readOnly ? ['ro'] : []), ...c.flags].join(','), theirs]);
      }
      expect(optionsAt(ours)).toEqual(optionsAt(theirs));
      expect(optionsAt(ours)).toContain(c.readOnly ? 'ro' : 'rw');
    });
  }

  it('answers failures as gRPC errors that name the call and the errno, and leaves nothing mounted', async () => {
    const t = freshTarget();
    const missing = bindMount(path.join(dir, 'no-such-source'), t, { readOnly: false });
    await expect(missing).rejects.toSatisfy((e) => e instanceof SyscallError || e instanceof ToolError);
    await expect(missing).rejects.toThrow(/mount --bind .*no-such-source.*: ENOENT/);
    await expect(unmount(t)).rejects.toThrow(/umount .*: EINVAL/);
    // A remount that fails takes the fresh bind mount away again.
    await expect(bindMount(path.join(src, 'vol'), t, { readOnly: false, flags: ['bogus'] })).rejects.toThrow(/bogus/);
    expect(await mountedAt(t)).toBeUndefined();
  });

  it('statx tells a mount point from a plain directory, a missing path and a file', async () => {
    const t = freshTarget();
    expect(await mountedAt(t)).toBeUndefined();
    expect(await mountedAt(path.join(t, 'missing'))).toBeUndefined();
    await bindMount(path.join(src, 'vol'), t, { readOnly: false });
    expect((await mountedAt(t))?.mountPoint).toBe(t);
    expect(await mountedAt(path.join(t, 'file'))).toBeUndefined();
    // Two layers: the top-most one is reported, and one unmount uncovers the other.
    await bindMount(path.join(src, 'vol'), t, { readOnly: true });
    expect((await mountedAt(t))?.options).toContain('ro');
    await unmount(t);
    expect((await mountedAt(t))?.options).toContain('rw');
    await unmount(t);
    expect(await mountedAt(t)).toBeUndefined();
  });
});

describe('HPP_MOUNT_BACKEND=tools', () => {
  it('makes the daemon publish with mount(8) and unpublish with umount(8), and says so', async () => {
    const pool = path.join(dir, 'pool');
    mkdirSync(pool);
    const d = await startDriver({ dir, args: ['--pool', `p=${pool}`], env: { HPP_MOUNT_BACKEND: 'tools' } });
    try {
      expect(d.logs()).toMatch(/"mounts":"mount\(8\) \(HPP_MOUNT_BACKEND=tools\)"/);
      const v = await d.clients.controller.CreateVolume({ name: 'tools-vol', volume_capabilities: [MOUNT_CAP], parameters: {} });
      const t = path.join(dir, 'targets', 'tools', 'mount');
      mkdirSync(path.dirname(t), { recursive: true });
      await d.clients.node.NodePublishVolume({ volume_id: v.volume.volume_id, target_path: t, volume_capability: MOUNT_CAP, readonly: true });
      expect(optionsAt(t)).toContain('ro');
      await d.clients.node.NodeUnpublishVolume({ volume_id: v.volume.volume_id, target_path: t });
      expect(await mountedAt(t)).toBeUndefined();
      await d.waitForLog(/"cmd":"mount --bind /);
      await d.waitForLog(/"cmd":"umount /);
    } finally {
      await d.stop();
    }
  });
});
