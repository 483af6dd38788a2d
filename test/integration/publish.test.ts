// NodePublishVolume / NodeUnpublishVolume against the real daemon with real bind mounts (run as root).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { poolLayout, recordFile } from '../../src/format/layout.js';
import { MOUNT_CAP, cleanupDir, expectCode, scratchDir, startDriver, type DriverProcess, type Msg } from '../helpers/driver.js';

interface MountLine {
  mountPoint: string;
  root: string;
  options: string[];
}

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Mounts from /proc/self/mountinfo, parsed here on purpose (independent of src/system/mount.ts). */
function mounts(): MountLine[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const f = l.split(' ');
      return { root: unescape(f[3]!), mountPoint: unescape(f[4]!), options: f[5]!.split(',') };
    });
}

function mountsAt(p: string): MountLine[] {
  return mounts().filter((m) => m.mountPoint === p);
}

function mountPointsUnder(dir: string): string[] {
  return mounts()
    .map((m) => m.mountPoint)
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort();
}

function cap(mode: string, flags: string[] = []): Msg {
  return { access_mode: { mode }, mount: { fs_type: '', mount_flags: flags } };
}

function errnoOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
  return undefined;
}

describe('NodePublishVolume / NodeUnpublishVolume with real bind mounts', () => {
  let dir: string;
  let pool: string;
  let targets: string;
  let d: DriverProcess;
  let seq = 0;

  /** A fresh volume (own name per test) in the pool. */
  async function newVolume(mode = 'SINGLE_NODE_WRITER'): Promise<{ id: string; name: string; data: string }> {
    const name = `pub-${++seq}`;
    const res = await d.clients.controller.CreateVolume({
      name,
      volume_capabilities: [cap(mode)],
      capacity_range: { required_bytes: '1048576' },
    });
    expect(res.volume.volume_id).toBe(`test-node:default:${name}`);
    return { id: res.volume.volume_id, name, data: path.join(pool, name) };
  }

  function target(label: string): string {
    return path.join(targets, `${label}-${++seq}`, 'mount');
  }

  function publish(volume_id: string, target_path: string, opts: { readonly?: boolean; capability?: Msg } = {}) {
    return d.clients.node.NodePublishVolume({
      volume_id,
      target_path,
      volume_capability: opts.capability ?? MOUNT_CAP,
      readonly: opts.readonly ?? false,
    });
  }

  function unpublish(volume_id: string, target_path: string) {
    return d.clients.node.NodeUnpublishVolume({ volume_id, target_path });
  }

  beforeAll(async () => {
    dir = scratchDir('publish');
    pool = path.join(dir, 'pool');
    targets = path.join(dir, 'targets');
    mkdirSync(pool);
    mkdirSync(targets);
    d = await startDriver({ dir, args: ['--pool', `default=${pool}`] });
  });

  afterAll(async () => {
    await d?.stop();
    if (dir) await cleanupDir(dir);
  });

  it('a file written through the target appears in the pool, and the other way round', async () => {
    const v = await newVolume();
    const t = target('rw');
    await publish(v.id, t);
    expect(mountsAt(t)).toHaveLength(1);

    writeFileSync(path.join(t, 'from-pod.txt'), 'hello from the pod');
    expect(readFileSync(path.join(v.data, 'from-pod.txt'), 'utf8')).toBe('hello from the pod');

    writeFileSync(path.join(v.data, 'from-host.txt'), 'hello from the host');
    expect(readFileSync(path.join(t, 'from-host.txt'), 'utf8')).toBe('hello from the host');
    expect(readdirSync(t).sort()).toEqual(['from-host.txt', 'from-pod.txt']);

    await unpublish(v.id, t);
    // Data stays in the pool after unpublish.
    expect(readFileSync(path.join(v.data, 'from-pod.txt'), 'utf8')).toBe('hello from the pod');
  });

  it('readonly: true publishes a read-only mount that refuses writes with EROFS', async () => {
    const v = await newVolume();
    writeFileSync(path.join(v.data, 'seed.txt'), 'seed');
    const t = target('ro');
    await publish(v.id, t, { readonly: true });
    const m = mountsAt(t);
    expect(m).toHaveLength(1);
    expect(m[0]!.options).toContain('ro');
    expect(readFileSync(path.join(t, 'seed.txt'), 'utf8')).toBe('seed');
    expect(errnoOf(() => writeFileSync(path.join(t, 'x.txt'), 'no'))).toBe('EROFS');
    expect(errnoOf(() => writeFileSync(path.join(t, 'seed.txt'), 'overwrite'))).toBe('EROFS');
    expect(errnoOf(() => mkdirSync(path.join(t, 'sub')))).toBe('EROFS');
    expect(existsSync(path.join(v.data, 'x.txt'))).toBe(false);
    expect(readFileSync(path.join(v.data, 'seed.txt'), 'utf8')).toBe('seed');
    // The pool itself stays writable: only the publication is read-only.
    writeFileSync(path.join(v.data, 'host.txt'), 'ok');
    await unpublish(v.id, t);
    expect(existsSync(t)).toBe(false);
  });

  it('access mode SINGLE_NODE_READER_ONLY publishes read-only even with readonly: false', async () => {
    const v = await newVolume('SINGLE_NODE_READER_ONLY');
    const t = target('reader');
    await publish(v.id, t, { readonly: false, capability: cap('SINGLE_NODE_READER_ONLY') });
    expect(mountsAt(t)[0]?.options).toContain('ro');
    expect(errnoOf(() => writeFileSync(path.join(t, 'x.txt'), 'no'))).toBe('EROFS');
    await unpublish(v.id, t);
    expect(mountsAt(t)).toHaveLength(0);
  });

  it('mount flag "ro" publishes read-only; an allowed flag (noexec) reaches the mount', async () => {
    const v = await newVolume();
    const t1 = target('flag-ro');
    await publish(v.id, t1, { capability: cap('SINGLE_NODE_WRITER', ['ro']) });
    expect(errnoOf(() => writeFileSync(path.join(t1, 'x.txt'), 'no'))).toBe('EROFS');
    const t2 = target('flag-noexec');
    await publish(v.id, t2, { capability: cap('SINGLE_NODE_WRITER', ['noexec', 'nosuid']) });
    const opts = mountsAt(t2)[0]!.options;
    expect(opts).toContain('noexec');
    expect(opts).toContain('nosuid');
    expect(opts).toContain('rw');
    writeFileSync(path.join(t2, 'x.txt'), 'yes');
    await unpublish(v.id, t1);
    await unpublish(v.id, t2);
    expect(mountPointsUnder(path.dirname(t1))).toEqual([]);
    expect(mountPointsUnder(path.dirname(t2))).toEqual([]);
  });

  it('republishing the same target with the same arguments is OK and mounts only once', async () => {
    const v = await newVolume();
    const t = target('idem');
    await publish(v.id, t);
    await publish(v.id, t);
    await publish(v.id, t);
    expect(mountsAt(t)).toHaveLength(1);
    // Read-only publication republished read-only: also idempotent.
    const t2 = target('idem-ro');
    await publish(v.id, t2, { readonly: true });
    await publish(v.id, t2, { readonly: true });
    expect(mountsAt(t2)).toHaveLength(1);
    await unpublish(v.id, t);
    await unpublish(v.id, t2);
  });

  it('republishing the same target with a different readonly flag is ALREADY_EXISTS and leaves the mount as it was', async () => {
    const v = await newVolume();
    const t = target('conflict');
    await publish(v.id, t);
    await expectCode(publish(v.id, t, { readonly: true }), 'ALREADY_EXISTS');
    expect(mountsAt(t)).toHaveLength(1);
    expect(mountsAt(t)[0]!.options).toContain('rw');
    writeFileSync(path.join(t, 'still-writable.txt'), 'yes');

    const t2 = target('conflict-ro');
    await publish(v.id, t2, { readonly: true });
    await expectCode(publish(v.id, t2, { readonly: false }), 'ALREADY_EXISTS');
    expect(mountsAt(t2)).toHaveLength(1);
    expect(mountsAt(t2)[0]!.options).toContain('ro');

    // Different mount flags are different arguments too.
    await expectCode(publish(v.id, t, { capability: cap('SINGLE_NODE_WRITER', ['noexec']) }), 'ALREADY_EXISTS');
    await unpublish(v.id, t);
    await unpublish(v.id, t2);
  });

  it('a SINGLE_NODE_SINGLE_WRITER volume cannot be published at a second target (FAILED_PRECONDITION)', async () => {
    const v = await newVolume('SINGLE_NODE_SINGLE_WRITER');
    const t1 = target('ssw-1');
    const t2 = target('ssw-2');
    await publish(v.id, t1, { capability: cap('SINGLE_NODE_SINGLE_WRITER') });
    await expectCode(publish(v.id, t2, { capability: cap('SINGLE_NODE_SINGLE_WRITER') }), 'FAILED_PRECONDITION');
    // Nor with a multi-writer capability while the single writer holds it.
    await expectCode(publish(v.id, t2, { capability: cap('SINGLE_NODE_WRITER') }), 'FAILED_PRECONDITION');
    expect(mountsAt(t2)).toHaveLength(0);
    expect(mountsAt(t1)).toHaveLength(1);
    // Same target again is still idempotent.
    await publish(v.id, t1, { capability: cap('SINGLE_NODE_SINGLE_WRITER') });
    // Once the first target is gone, the second one may have it.
    await unpublish(v.id, t1);
    await publish(v.id, t2, { capability: cap('SINGLE_NODE_SINGLE_WRITER') });
    expect(mountsAt(t2)).toHaveLength(1);
    await unpublish(v.id, t2);
    // The other way round: already published (multi-writer) somewhere, a single writer cannot join.
    const t3 = target('ssw-3');
    await publish(v.id, t1, { capability: cap('SINGLE_NODE_WRITER') });
    await expectCode(publish(v.id, t3, { capability: cap('SINGLE_NODE_SINGLE_WRITER') }), 'FAILED_PRECONDITION');
    expect(mountsAt(t3)).toHaveLength(0);
    await unpublish(v.id, t1);
  });

  it('a SINGLE_NODE_WRITER volume may be published at two targets that share the data', async () => {
    const v = await newVolume();
    const t1 = target('multi-1');
    const t2 = target('multi-2');
    await publish(v.id, t1);
    await publish(v.id, t2);
    writeFileSync(path.join(t1, 'shared.txt'), 'one');
    expect(readFileSync(path.join(t2, 'shared.txt'), 'utf8')).toBe('one');
    await unpublish(v.id, t1);
    await unpublish(v.id, t2);
  });

  it('unpublish removes the mount and the target directory; a second unpublish is OK', async () => {
    const v = await newVolume();
    const t = target('unpub');
    await publish(v.id, t);
    expect(mountsAt(t)).toHaveLength(1);
    await unpublish(v.id, t);
    expect(mountsAt(t)).toHaveLength(0);
    expect(existsSync(t)).toBe(false);
    await unpublish(v.id, t);
    expect(existsSync(t)).toBe(false);
    // A target that was never published (and does not exist) is OK as well.
    await unpublish(v.id, target('never'));
  });

  it('unpublish of an unknown volume is NOT_FOUND', async () => {
    await expectCode(unpublish('test-node:default:does-not-exist', target('unknown')), 'NOT_FOUND');
    await expectCode(unpublish('garbage-id', target('unknown')), 'NOT_FOUND');
    await expectCode(publish('test-node:default:does-not-exist', target('unknown')), 'NOT_FOUND');
  });

  it('DeleteVolume of a published volume is FAILED_PRECONDITION; after unpublish it is deleted and its directory leaves the pool', async () => {
    const v = await newVolume();
    const t = target('del');
    await publish(v.id, t);
    writeFileSync(path.join(t, 'data.txt'), 'keep me');
    await expectCode(d.clients.controller.DeleteVolume({ volume_id: v.id }), 'FAILED_PRECONDITION');
    expect(readFileSync(path.join(v.data, 'data.txt'), 'utf8')).toBe('keep me');
    expect(readFileSync(path.join(t, 'data.txt'), 'utf8')).toBe('keep me');
    expect(existsSync(recordFile(poolLayout(pool).volumesDir, v.name))).toBe(true);

    await unpublish(v.id, t);
    await d.clients.controller.DeleteVolume({ volume_id: v.id });
    expect(existsSync(v.data)).toBe(false);
    expect(existsSync(recordFile(poolLayout(pool).volumesDir, v.name))).toBe(false);
    const list = await d.clients.controller.ListVolumes({});
    expect(list.entries.map((e: Msg) => e.volume.volume_id)).not.toContain(v.id);
    await expectCode(publish(v.id, target('after-delete')), 'NOT_FOUND');
  });

  it('hostile target paths are INVALID_ARGUMENT and mount nothing', async () => {
    const v = await newVolume();
    const before = mountPointsUnder(dir);
    const rootMountsBefore = mountsAt('/').length;
    const hostile = [
      'relative/target',
      './target',
      `${targets}/a/../b`,
      `${targets}/a/./b`,
      `${targets}/../targets/x`,
      path.join(pool, 'inside'),
      path.join(pool, v.name),
      path.join(pool, v.name, 'nested'),
      path.join(poolLayout(pool).metaDir, 'x'),
      pool,
      dir, // a parent of the pool
      '/',
      `${targets}/nul\u0000byte`,
      '',
    ];
    for (const p of hostile) {
      await expectCode(publish(v.id, p), 'INVALID_ARGUMENT').catch((err: Error) => {
        throw new Error(`target ${JSON.stringify(p)}: ${err.message}`);
      });
      await expectCode(unpublish(v.id, p), 'INVALID_ARGUMENT').catch((err: Error) => {
        throw new Error(`unpublish target ${JSON.stringify(p)}: ${err.message}`);
      });
    }
    expect(mountPointsUnder(dir)).toEqual(before);
    expect(existsSync(path.join(pool, 'inside'))).toBe(false);
    expect(existsSync(path.join(targets, 'b'))).toBe(false);
    expect(existsSync(path.join(targets, 'x'))).toBe(false);
    expect(existsSync(path.join(v.data, 'nested'))).toBe(false);
    expect(mountsAt('/').length).toBe(rootMountsBefore);
  });

  // Product bug at the time of writing: checkTargetPath (src/csi/node.ts) only checks the path
  // lexically, and mount(8) follows symlinks, so the volume gets stacked onto data inside the pool.
  it('a target path that goes through a symlink into the pool is INVALID_ARGUMENT and mounts nothing in the pool', async () => {
    const victim = await newVolume();
    const v = await newVolume();
    const base = path.join(targets, `symlink-${++seq}`);
    mkdirSync(base);
    // (a) the target itself is a symlink to another volume's directory
    const linkTarget = path.join(base, 'mount');
    symlinkSync(victim.data, linkTarget);
    // (b) a parent of the target is a symlink to the pool root
    const linkParent = path.join(base, 'parent');
    symlinkSync(pool, linkParent);
    const viaParent = path.join(linkParent, 'mount');
    // (c) a parent that is a dangling symlink into the pool (the place it names does not exist yet)
    const danglingParent = path.join(base, 'dangling');
    symlinkSync(path.join(pool, 'not-yet'), danglingParent);
    const viaDangling = path.join(danglingParent, 'sub', 'mount');
    const before = mountPointsUnder(dir);
    try {
      await expectCode(publish(v.id, linkTarget), 'INVALID_ARGUMENT');
      expect(mountsAt(victim.data)).toHaveLength(0);
      await expectCode(publish(v.id, viaParent), 'INVALID_ARGUMENT');
      expect(existsSync(path.join(pool, 'mount'))).toBe(false);
      const e = await expectCode(publish(v.id, viaDangling), 'INVALID_ARGUMENT');
      expect(e.details).toContain(`really ${path.join(pool, 'not-yet', 'sub', 'mount')}`);
      expect(existsSync(path.join(pool, 'not-yet'))).toBe(false);
      expect(mountPointsUnder(dir)).toEqual(before);
    } finally {
      // Undo whatever the driver did, so that later tests start clean.
      for (const m of mountPointsUnder(dir).filter((x) => !before.includes(x)).reverse()) execFileSync('umount', [m]);
      rmSync(path.join(pool, 'mount'), { recursive: true, force: true });
    }
  });

  it('disallowed mount flags are INVALID_ARGUMENT and mount nothing', async () => {
    const v = await newVolume();
    for (const flag of ['bind', 'rbind', 'remount', 'rshared', 'uid=0', 'context=system_u:object_r:foo_t:s0', 'ro,remount', 'defaults']) {
      const t = target('badflag');
      await expectCode(publish(v.id, t, { capability: cap('SINGLE_NODE_WRITER', [flag]) }), 'INVALID_ARGUMENT').catch((err: Error) => {
        throw new Error(`flag ${flag}: ${err.message}`);
      });
      expect(mountsAt(t)).toHaveLength(0);
      expect(existsSync(t)).toBe(false);
    }
  });

  it('a target holding a foreign mount: publish is ALREADY_EXISTS and unpublish leaves it alone', async () => {
    const v = await newVolume();
    const foreign = path.join(dir, `foreign-${++seq}`);
    mkdirSync(foreign);
    writeFileSync(path.join(foreign, 'theirs.txt'), 'not a volume');
    const t = target('foreign');
    mkdirSync(t, { recursive: true });
    execFileSync('mount', ['--bind', foreign, t]);
    try {
      await expectCode(publish(v.id, t), 'ALREADY_EXISTS');
      await expectCode(unpublish(v.id, t), 'FAILED_PRECONDITION');
      expect(mountsAt(t)).toHaveLength(1);
      expect(readFileSync(path.join(t, 'theirs.txt'), 'utf8')).toBe('not a volume');
    } finally {
      execFileSync('umount', [t]);
    }
  });

  it('a mount of the volume made before a crash (not recorded) is adopted by publish and removed by unpublish', async () => {
    const v = await newVolume();
    const t = target('adopt');
    mkdirSync(t, { recursive: true });
    execFileSync('mount', ['--bind', v.data, t]);
    await publish(v.id, t);
    expect(mountsAt(t)).toHaveLength(1);
    await expectCode(d.clients.controller.DeleteVolume({ volume_id: v.id }), 'FAILED_PRECONDITION');
    await unpublish(v.id, t);
    expect(mountsAt(t)).toHaveLength(0);
    expect(existsSync(t)).toBe(false);
    await d.clients.controller.DeleteVolume({ volume_id: v.id });
  });

  it('missing or unsupported fields are INVALID_ARGUMENT', async () => {
    const v = await newVolume();
    await expectCode(d.clients.node.NodePublishVolume({ volume_id: '', target_path: target('f'), volume_capability: MOUNT_CAP }), 'INVALID_ARGUMENT');
    await expectCode(d.clients.node.NodePublishVolume({ volume_id: v.id, target_path: target('f') }), 'INVALID_ARGUMENT');
    await expectCode(publish(v.id, target('f'), { capability: cap('MULTI_NODE_MULTI_WRITER') }), 'INVALID_ARGUMENT');
    await expectCode(d.clients.node.NodeUnpublishVolume({ volume_id: v.id, target_path: '' }), 'INVALID_ARGUMENT');
    await expectCode(d.clients.node.NodeUnpublishVolume({ volume_id: '', target_path: target('f') }), 'INVALID_ARGUMENT');
  });

  it('leaves no mounts behind under the test directory', async () => {
    // Every test above unpublished what it published.
    expect(mountPointsUnder(targets)).toEqual([]);
    expect(mountPointsUnder(pool)).toEqual([]);
  });
});
