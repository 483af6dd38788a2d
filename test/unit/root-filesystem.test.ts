/**
 * A pool on the node's root filesystem (its disk not mounted at the pool path): found from the mount
 * table when the pool is prepared (src/pools/root-filesystem.ts, Pool.prepare), logged as a warning, kept
 * in the supervisor's state and shown as hpp_pool_on_root_filesystem, which a scrape only reads.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger, type Logger } from '../../src/observe/logger.js';
import { poolStatuses, type PoolView, type VolumeSource } from '../../src/observe/health.js';
import { DriverMetrics } from '../../src/observe/metrics.js';
import { Pool } from '../../src/pools/pool.js';
import { onRootFilesystem } from '../../src/pools/root-filesystem.js';
import type { QuotaBackend } from '../../src/pools/quota.js';
import { PoolSupervisor, type PoolLifecycle, type PoolStateView } from '../../src/pools/supervisor.js';
import { parseMountinfo, type MountEntry } from '../../src/system/mount.js';
import { FakeHost } from '../helpers/fake-host.js';

let id = 1;
function mount(mountPoint: string, root: string, device = '8:1', fsType = 'ext4'): MountEntry {
  return { mountId: id++, parentId: 1, device, root, mountPoint, options: ['rw'], fsType, source: `/dev/x${device}`, superOptions: ['rw'] };
}

describe('onRootFilesystem: the pool directory on the filesystem mounted at the node\'s /', () => {
  // The daemon as a host process: its mount table is the node's.
  describe('on the node', () => {
    const root = mount('/', '/');
    it('a plain directory under / is', () => {
      expect(onRootFilesystem('/var/hpvolumes', [root])).toBe(true);
      expect(onRootFilesystem('/', [root])).toBe(true);
    });
    it('a disk mounted at the pool path is not, nor a directory of a disk mounted above it', () => {
      expect(onRootFilesystem('/var/hpvolumes', [root, mount('/var/hpvolumes', '/', '253:0', 'xfs')])).toBe(false);
      expect(onRootFilesystem('/var/hpvolumes', [root, mount('/var', '/', '253:1', 'xfs')])).toBe(false);
      expect(onRootFilesystem('/var/hpvolumes/sub', [root, mount('/var/hpvolumes', '/', '253:0', 'xfs')])).toBe(false);
    });
    it('a mount point whose disk went away again is (the later, top-most entry wins at one point)', () => {
      // A bind of the root filesystem's own directory onto itself (made shared for Bidirectional, as hack/e2e/up does).
      expect(onRootFilesystem('/var/hpvolumes', [root, mount('/var/hpvolumes', '/var/hpvolumes')])).toBe(true);
      expect(onRootFilesystem('/var/hpvolumes', [root, mount('/var/hpvolumes', '/var/hpvolumes'), mount('/var/hpvolumes', '/', '253:0', 'xfs')])).toBe(false);
    });
    it('a prefix that is not a parent directory does not hold the path', () => {
      expect(onRootFilesystem('/var/hpvolumes-small', [root, mount('/var/hpvolumes', '/', '253:0', 'xfs')])).toBe(true);
    });
    it('undefined with no mount holding it', () => {
      expect(onRootFilesystem('/var/hpvolumes', [])).toBeUndefined();
    });
  });

  // In the DaemonSet `/` is the container's overlay; the pool comes as a hostPath bind mount at its
  // host path, and that entry's root is the path inside the filesystem it comes from.
  describe('in the driver container', () => {
    const overlay = mount('/', '/', '0:55', 'overlay');
    it('the bind of a directory of the node\'s root filesystem is (root = its host path)', () => {
      expect(onRootFilesystem('/var/hpvolumes', [overlay, mount('/var/hpvolumes', '/var/hpvolumes')])).toBe(true);
    });
    it('the bind of a disk mounted at the pool path on the node is not (root = /)', () => {
      expect(onRootFilesystem('/var/hpvolumes', [overlay, mount('/var/hpvolumes', '/', '253:0', 'xfs')])).toBe(false);
    });
    it('the bind of a directory of a disk mounted at /var on the node is not (root = /hpvolumes)', () => {
      expect(onRootFilesystem('/var/hpvolumes', [overlay, mount('/var/hpvolumes', '/hpvolumes', '253:1', 'xfs')])).toBe(false);
    });
    it('the same answers from mountinfo text as the kernel writes it', () => {
      const text = [
        '600 500 0:55 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w',
        '610 600 8:1 /var/hpvolumes /var/hpvolumes rw,relatime shared:1 - ext4 /dev/sda1 rw',
        '611 600 253:0 / /var/hpvolumes-small rw,relatime shared:2 - btrfs /dev/loop0 rw,space_cache=v2',
      ].join('\n');
      const table = parseMountinfo(text);
      expect(onRootFilesystem('/var/hpvolumes', table)).toBe(true);
      expect(onRootFilesystem('/var/hpvolumes-small', table)).toBe(false);
    });
  });

  it("this machine's own table: / is on the root filesystem, /proc is not", () => {
    const table = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
    expect(onRootFilesystem('/', table)).toBe(true);
    expect(onRootFilesystem('/proc', table)).toBe(false);
  });
});

/** A logger whose lines are kept as objects. */
function capture(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'info' }, stream) as unknown as Logger, lines };
}

describe('Pool.prepare', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-rootfs-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('finds a pool bound from the root filesystem (no disk of its own) and warns; a pool on its disk is not', async () => {
    const onDisk = path.join(dir, 'disk');
    const onRoot = path.join(dir, 'bare');
    mkdirSync(onDisk);
    mkdirSync(onRoot);
    // The fake's table: / and a filesystem at `dir` (for statfs), a disk mounted at onDisk, and onRoot
    // as the DaemonSet's hostPath shows a directory of the node's root filesystem: a bind whose root is
    // that directory's own path.
    const size = { type: 'xfs' as const, quota: true, totalBytes: 1n << 30n, freeBytes: 1n << 29n };
    const host = new FakeHost({ filesystems: [{ mountPoint: dir, ...size }, { mountPoint: onDisk, ...size }] });
    await host.mounts.bind(onRoot, onRoot, { readOnly: false });
    const { log, lines } = capture();
    const pools = [
      new Pool({ name: 'disk', path: onDisk, useNamingPrefix: false, overcommitRatio: 1 }, host, log),
      new Pool({ name: 'bare', path: onRoot, useNamingPrefix: false, overcommitRatio: 1 }, host, log),
    ];
    const [a, b] = [await pools[0]!.prepare(), await pools[1]!.prepare()];
    for (const p of pools) await p.release(); // the daemon locks
    expect(a).toMatchObject({ ready: true, onRootFilesystem: false });
    expect(b).toMatchObject({ ready: true, onRootFilesystem: true });
    const warned = lines.filter((l) => /pool is on the root filesystem/.test(String(l.msg)));
    expect(warned.map((l) => l.root)).toEqual([onRoot]);
    expect(warned[0]!.level).toBe(40); // warn
  });
});

describe('the supervisor keeps it, the metric shows it', () => {
  const quota = { kind: 'xfs-project' } as unknown as QuotaBackend;
  function lifecycle(name: string, onRoot: boolean | undefined, calls: { n: number }): PoolLifecycle {
    return {
      name,
      async load() {
        calls.n++;
        return { quota, ...(onRoot !== undefined ? { onRootFilesystem: onRoot } : {}) };
      },
      intact: () => true,
      unload: () => {},
      missingPath: () => undefined,
    };
  }

  it('computed when the pool is prepared, exposed from state, and a scrape prepares nothing', async () => {
    const calls = { n: 0 };
    const sup = new PoolSupervisor([lifecycle('root', true, calls), lifecycle('disk', false, calls), lifecycle('unknown', undefined, calls)], silentLogger(), { watch: () => ({ close() {} }) });
    await sup.start();
    try {
      expect(calls.n).toBe(3);
      expect(sup.state('root').onRootFilesystem).toBe(true);
      expect(sup.state('disk').onRootFilesystem).toBe(false);
      expect(sup.state('unknown').onRootFilesystem).toBeUndefined();

      const views: PoolView[] = ['root', 'disk', 'unknown'].map((name) => ({ name, health: async () => ({ ready: true }) }) as unknown as PoolView);
      const source = {
        list: () => [],
        poolList: () => views,
        poolState: (name: string): Promise<PoolStateView> => sup.settled(name, 0),
        capacityOf: async () => ({ totalBytes: 1n, freeBytes: 1n, usedBytes: 0n, reservedBytes: 0n, availableBytes: 1n }),
      } as unknown as VolumeSource;
      expect((await poolStatuses(source)).map((s) => [s.name, s.onRootFilesystem])).toEqual([
        ['root', true],
        ['disk', false],
        ['unknown', undefined],
      ]);
      const m = new DriverMetrics(source, silentLogger(), { version: '1', defaultMetrics: false });
      for (let i = 0; i < 3; i++) {
        const text = await m.render();
        expect(text).toMatch(/^# TYPE hpp_pool_on_root_filesystem gauge$/m);
        expect(text).toMatch(/^hpp_pool_on_root_filesystem\{pool="root"\} 1$/m);
        expect(text).toMatch(/^hpp_pool_on_root_filesystem\{pool="disk"\} 0$/m);
        expect(text).not.toMatch(/^hpp_pool_on_root_filesystem\{pool="unknown"\}/m);
      }
      expect(calls.n, 'scrapes only read the state').toBe(3);
    } finally {
      await sup.close();
    }
  });

  it('a pool that is not ready has no series', async () => {
    const failing: PoolLifecycle = { name: 'gone', load: () => Promise.reject(new Error('pool gone: /x does not exist')), intact: () => true, unload: () => {}, missingPath: () => '/x' };
    const sup = new PoolSupervisor([failing], silentLogger(), { retryInitialMs: 60_000, watch: () => ({ close() {} }) });
    await sup.start();
    try {
      expect(sup.state('gone').onRootFilesystem).toBeUndefined();
      const source = {
        list: () => [],
        poolList: () => [{ name: 'gone', health: async () => ({ ready: false }) }],
        poolState: (name: string) => sup.settled(name, 0),
        capacityOf: async () => {
          throw new Error('not ready');
        },
      } as unknown as VolumeSource;
      const text = await new DriverMetrics(source, silentLogger(), { version: '1', defaultMetrics: false }).render();
      expect(text).not.toMatch(/^hpp_pool_on_root_filesystem\{/m);
    } finally {
      await sup.close();
    }
  });
});
