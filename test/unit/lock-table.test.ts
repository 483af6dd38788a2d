/**
 * The lock table (src/csi/locks.ts): every CSI method that changes anything is declared there and
 * its handler takes exactly the keys the table gives; calls that must not overlap share a key; a bad
 * request is refused before any lock. No root needed: the volume manager is a stub.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DriverContext } from '../../src/csi/context.js';
import { controllerService } from '../../src/csi/controller.js';
import { Answer, LOCK_TABLE, locked, lockedAs, type LockedMethod, type LockSubjects } from '../../src/csi/locks.js';
import { nodeService } from '../../src/csi/node.js';
import { isDriverError } from '../../src/errors.js';
import { rootContext, type CallContext } from '../../src/observe/call-context.js';
import { silentLogger } from '../../src/observe/logger.js';
import { KeyedLock } from '../../src/util/keyed-lock.js';
import { FakeHost } from '../helpers/fake-host.js';
import type { VolumeManager } from '../../src/volumes/manager.js';
import type { VolumeRecord } from '../../src/format/records.js';

const MOUNT_CAP = { access_mode: { mode: 'SINGLE_NODE_WRITER' }, access_type: 'mount', mount: { fs_type: '', mount_flags: [] } };

/** Methods that only read: answered without any lock. Everything else a service handles changes something. */
const READS = /^(Controller|Node)?Get|^List|^Validate/;

/** A KeyedLock that remembers the keys of every withKeys call. */
class RecordingLock extends KeyedLock {
  readonly taken: string[][] = [];
  override withKeys<T>(keys: string[], fn: () => Promise<T>): Promise<T> {
    this.taken.push([...keys].sort());
    return super.withKeys(keys, fn);
  }
}

function record(name: string, mode: 'filesystem' | 'block' = 'filesystem'): VolumeRecord {
  return {
    version: 1,
    id: `n1:p:${name}`,
    name,
    pool: 'p',
    node: 'n1',
    mode,
    data: name,
    capacityBytes: '1048576',
    parameters: {},
    createdAt: '2026-01-01T00:00:00.000Z',
    state: 'ready',
    publications: {},
  };
}

/**
 * A context whose volume manager knows one volume, `v1`, and stops every call that would change
 * something in its run step, so that only the locking is seen.
 */
function stubContext(lock: KeyedLock): DriverContext {
  const pool = { name: 'p', root: '/nonexistent-pool-root', useNamingPrefix: false, filesystemOverhead: { value: 0.055, text: '0.055' } };
  const stop = async () => {
    throw new Error('stopped in run');
  };
  const volumes = {
    node: 'n1',
    locks: lock,
    poolList: () => [pool],
    getPool: (name: string) => (name === 'p' ? pool : undefined),
    resolvePool: () => pool,
    dataPath: (_: unknown, rec: VolumeRecord) => path.join(pool.root, rec.data),
    find: async (id: string) => (id === 'n1:p:v1' ? record('v1') : undefined),
    findByName: () => undefined,
    findSnapshot: async () => undefined,
    snapshotByName: () => undefined,
    create: stop,
    delete: stop,
    expand: stop,
    createSnapshot: stop,
    updatePublications: stop,
    // Nothing is mounted anywhere: the run steps only look, and are stopped before they change anything.
    host: new FakeHost({ filesystems: [] }),
  } as unknown as VolumeManager;
  return { driverName: 'kubevirt.io.hostpath-provisioner', version: 'test', node: 'n1', volumes, log: silentLogger() };
}

/** Handled methods that change something but are not locked by their own table entry. */
function unlockedMutations(handlers: Record<string, unknown>, table: Partial<Record<LockedMethod, unknown>>): string[] {
  return Object.keys(handlers)
    .filter((m) => !READS.test(m))
    .filter((m) => !(m in table) || lockedAs(handlers[m]) !== m)
    .sort();
}

describe('the lock table', () => {
  const ctx = stubContext(new KeyedLock());
  const handlers = { ...controllerService(ctx), ...nodeService(ctx) } as Record<string, unknown>;

  it('has an entry, with its reason, for every method that changes something, and its handler is locked by it', () => {
    expect(unlockedMutations(handlers, LOCK_TABLE)).toEqual([]);
    for (const [method, entry] of Object.entries(LOCK_TABLE)) {
      expect(handlers[method], `${method} has a handler`).toBeDefined();
      expect(entry.why.length, `${method} says why`).toBeGreaterThan(20);
    }
  });

  it('the methods it leaves out only read', () => {
    const unlocked = Object.keys(handlers).filter((m) => lockedAs(handlers[m]) === undefined).sort();
    expect(unlocked).toEqual([
      'ControllerGetCapabilities',
      'ControllerGetVolume',
      'GetCapacity',
      'ListSnapshots',
      'ListVolumes',
      'NodeGetCapabilities',
      'NodeGetInfo',
      'NodeGetVolumeStats',
      'ValidateVolumeCapabilities',
    ]);
  });

  it('the check above is not vacuous: removing any entry is caught', () => {
    for (const method of Object.keys(LOCK_TABLE) as LockedMethod[]) {
      const without: Partial<typeof LOCK_TABLE> = { ...LOCK_TABLE };
      delete without[method];
      expect(unlockedMutations(handlers, without), `without ${method}`).toEqual([method]);
    }
    // And so is a mutating handler that is not wrapped.
    expect(unlockedMutations({ ...handlers, DeleteVolume: async () => ({}) }, LOCK_TABLE)).toEqual(['DeleteVolume']);
  });

  const keys = <M extends LockedMethod>(m: M, s: LockSubjects[M]) => new Set((LOCK_TABLE[m].keys as (s: LockSubjects[M]) => string[])(s));
  const share = (a: Set<string>, b: Set<string>) => [...a].some((k) => b.has(k));

  it('calls that must not overlap share a key', () => {
    const create = keys('CreateVolume', { volume: 'v1', pool: 'p', data: 'v1' });
    const del = keys('DeleteVolume', { volume: 'v1' });
    const publish = keys('NodePublishVolume', { volume: 'v1', target: '/t' });
    const unpublish = keys('NodeUnpublishVolume', { volume: 'v1', target: '/t' });
    const cexpand = keys('ControllerExpandVolume', { volume: 'v1' });
    const nexpand = keys('NodeExpandVolume', { volume: 'v1' });
    const snap = keys('CreateSnapshot', { snapshot: 's1', source: 'v1' });
    for (const [a, b] of [
      [create, del],
      [publish, del],
      [unpublish, del],
      [publish, unpublish],
      [cexpand, del],
      [cexpand, nexpand],
      [snap, del],
      [snap, cexpand],
    ]) {
      expect(share(a!, b!)).toBe(true);
    }
    // Two volumes at one target, and a restore (or clone) against a delete of its source.
    expect(share(keys('NodePublishVolume', { volume: 'a', target: '/t' }), keys('NodePublishVolume', { volume: 'b', target: '/t' }))).toBe(true);
    expect(share(keys('CreateVolume', { volume: 'r', pool: 'p', data: 'r', source: 's1' }), keys('DeleteSnapshot', { snapshot: 's1' }))).toBe(true);
    expect(share(keys('CreateVolume', { volume: 'c', pool: 'p', data: 'c', source: 'v1' }), del)).toBe(true);
    // Two names whose data would be one directory.
    expect(share(keys('CreateVolume', { volume: 'a', pool: 'p', data: 'd' }), keys('CreateVolume', { volume: 'b', pool: 'p', data: 'd' }))).toBe(true);
    // Different volumes do not wait on each other.
    expect(share(keys('NodePublishVolume', { volume: 'a', target: '/ta' }), keys('NodePublishVolume', { volume: 'b', target: '/tb' }))).toBe(false);
    expect(share(keys('DeleteVolume', { volume: 'a' }), keys('ControllerExpandVolume', { volume: 'b' }))).toBe(false);
  });
});

describe('locked()', () => {
  it('checks before any lock and runs with the keys held', async () => {
    const lock = new KeyedLock();
    const order: string[] = [];
    const handler = locked('DeleteVolume', () => lock, {
      async check(req: { id: string }) {
        order.push(`check ${req.id}`);
        if (req.id === 'bad') throw new Error('refused');
        if (req.id === 'none') return new Answer({ deleted: 'nothing' });
        return { volume: req.id };
      },
      async run({ volume }) {
        order.push(`run ${volume} held=${lock.isHeld(`name/${volume}`)}`);
        return { deleted: volume };
      },
    });
    let release!: () => void;
    const holding = lock.withKey('name/v1', () => new Promise<void>((r) => (release = r)));
    const waiting = handler({ id: 'v1' }, rootContext(silentLogger()));
    // A bad request is refused and an answer without work given while the key is held by another call.
    await expect(handler({ id: 'bad' }, rootContext(silentLogger()))).rejects.toThrow('refused');
    expect(await handler({ id: 'none' }, rootContext(silentLogger()))).toEqual({ deleted: 'nothing' });
    expect(order).toEqual(['check v1', 'check bad', 'check none']);
    release();
    await holding;
    expect(await waiting).toEqual({ deleted: 'v1' });
    expect(order).toContain('run v1 held=true');
    expect(lock.isHeld('name/v1')).toBe(false);
  });
});

describe('the services take the keys of their table entries', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-locks-'));
    mkdirSync(path.join(dir, 'real'));
    symlinkSync(path.join(dir, 'real'), path.join(dir, 'link'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function keysOf(call: (h: Record<string, (req: object) => Promise<unknown>>) => Promise<unknown>): Promise<string[][]> {
    const lock = new RecordingLock();
    const ctx = stubContext(lock);
    const services = { ...controllerService(ctx), ...nodeService(ctx) } as unknown as Record<string, (req: object, cx: CallContext) => Promise<unknown>>;
    const cx = rootContext(silentLogger());
    const h = Object.fromEntries(Object.entries(services).map(([m, f]) => [m, (req: object) => f(req, cx)]));
    await call(h).catch((err: unknown) => {
      // Every call is stopped in its run step, by the stub or by the volume not being where it is named.
      if (!(isDriverError(err, 'not-found') || (err instanceof Error && err.message === 'stopped in run'))) throw err;
    });
    return lock.taken;
  }

  it('NodePublishVolume and NodeUnpublishVolume: the volume name and the real target', async () => {
    const target = path.join(dir, 'link', 'pod', 'mount');
    const real = path.join(dir, 'real', 'pod', 'mount');
    expect(await keysOf((h) => h.NodePublishVolume!({ volume_id: 'n1:p:v1', target_path: target, volume_capability: MOUNT_CAP, readonly: false }))).toEqual([
      ['name/v1', `target/${real}`],
    ]);
    expect(await keysOf((h) => h.NodeUnpublishVolume!({ volume_id: 'n1:p:v1', target_path: target }))).toEqual([['name/v1', `target/${real}`]]);
  });

  it('a bad request takes no lock', async () => {
    expect(await keysOf((h) => h.NodePublishVolume!({ volume_id: 'n1:p:v1', target_path: 'relative', volume_capability: MOUNT_CAP }).catch(() => {}))).toEqual([]);
    expect(await keysOf((h) => h.NodePublishVolume!({ volume_id: 'n1:p:nope', target_path: path.join(dir, 't'), volume_capability: MOUNT_CAP }))).toEqual([]);
    expect(await keysOf((h) => h.DeleteVolume!({ volume_id: 'not an id: no volume has it' }))).toEqual([]);
  });

  it("an id of hostpath-provisioner's form (a PV name) is locked by that name: it may be an HPP volume", async () => {
    expect(await keysOf((h) => h.DeleteVolume!({ volume_id: 'pvc-1234' }))).toEqual([['name/pvc-1234']]);
    expect(await keysOf((h) => h.DeleteSnapshot!({ snapshot_id: 'snapshot-1234' }))).toEqual([['snapname/snapshot-1234']]);
  });

  it('the other locked methods', async () => {
    expect(await keysOf((h) => h.NodeExpandVolume!({ volume_id: 'n1:p:v1', volume_path: path.join(dir, 't') }))).toEqual([['name/v1']]);
    expect(await keysOf((h) => h.ControllerExpandVolume!({ volume_id: 'n1:p:v1', capacity_range: { required_bytes: '2097152', limit_bytes: '' } }))).toEqual([['name/v1']]);
    expect(await keysOf((h) => h.DeleteVolume!({ volume_id: 'n1:p:v1' }))).toEqual([['name/v1']]);
    expect(await keysOf((h) => h.DeleteSnapshot!({ snapshot_id: 'n1:p:s1' }))).toEqual([['snapname/s1']]);
    expect(await keysOf((h) => h.CreateSnapshot!({ name: 's1', source_volume_id: 'n1:p:v1', parameters: {} }))).toEqual([['name/v1', 'snapname/s1']]);
    expect(await keysOf((h) => h.CreateVolume!({ name: 'v2', volume_capabilities: [MOUNT_CAP], capacity_range: null, parameters: {} }))).toEqual([['data/p/v2', 'name/v2']]);
  });
});
