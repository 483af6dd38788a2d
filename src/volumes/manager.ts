import { promises as fsp, renameSync } from 'node:fs';
import path from 'node:path';
import { conflict, internal, invalidInput, noSpace, outOfRange, precondition, unavailable } from '../errors.js';
import { CapacityTracker, type CapacityFigures } from '../pools/capacity.js';
import { uncancellable, type CallContext } from '../observe/call-context.js';
import type { Logger } from '../observe/logger.js';
import { LEGACY_POOL_NAME } from '../pools/config.js';
import type { Pool } from '../pools/pool.js';
import type { QuotaBackend } from '../pools/quota.js';
import { PoolSupervisor, type PoolLifecycle, type PoolStateView, type Prepared, type SupervisorOptions } from '../pools/supervisor.js';
import { fsyncDir } from '../system/atomic-file.js';
import type { CopyMethod } from '../system/copy.js';
import { CONTAINER_FILE_CONTEXT } from '../system/selinux.js';
import { exists, fsyncTree, growFile } from '../system/files.js';
import type { Host } from '../system/host.js';
import { mountsBelow } from '../system/mount.js';
import type { PreallocateContext, PreallocationMethod } from '../system/preallocate.js';
import { removeTree } from '../system/walk.js';
import { KeyedLock } from '../util/keyed-lock.js';
import { buildBlockImage, detachAll, reportDeferredDetaches } from './block.js';
import { diskImageSize, ensureDiskImage, MIN_DISK_IMAGE_BYTES, type Overhead } from './disk-image.js';
import { formatVolumeId, isValidName, parseVolumeId } from './ids.js';
import { findHppSnapshot, findHppVolume, hppDirOf, scanHpp, snapshotRemovalPath, topLevelNames } from './hpp-volumes.js';
import { capacityKey } from './lock-keys.js';
import { loadPool } from './pool-loader.js';
import { newPoolState, type PoolState } from './pool-state.js';
import { recordFile, snapshotBuildPath, snapshotDataDir, volumeBuildPath } from '../format/layout.js';
import { toStored, type Publications, type SnapshotRecord, type VolumeMode, type VolumeRecord } from '../format/records.js';
import { PreallocationTracker } from './preallocations.js';
import { wantsPreallocation } from './record.js';
import { Trash } from './trash.js';

export interface CreateSpec {
  pool: Pool;
  name: string;
  mode: VolumeMode;
  capacityBytes: bigint;
  /** Why capacityBytes is more than was asked for, for the errors that name it. */
  capacityNote?: string;
  parameters: Record<string, string>;
  /** Where the data goes, relative to the pool root (see VolumeRecord.data). */
  data: string;
  preallocate: boolean;
  /** Give the volume a disk.img sized with this overhead (filesystem volumes): a new one, or the source's copy grown. */
  diskImageOverhead?: Overhead;
  /** Fill the new volume from a snapshot or another volume (clone). */
  source?: ContentSource;
  /** The PVC the volume is for, kept in its record. */
  pvc?: { namespace: string; name: string };
}

export interface ContentSource {
  kind: 'snapshot' | 'volume';
  id: string;
  /** Absolute path of the source's data (directory tree or image file). */
  dataPath: string;
  mode: VolumeMode;
  diskImage?: { overhead: string };
  sizeBytes: bigint;
}

/** A pool ready for work: its state and the quota backend of its current preparation. */
interface ReadyPool {
  st: PoolState;
  quota: QuotaBackend;
}

/**
 * Owns every volume and snapshot of this node: the pools, their durable records and an in-memory
 * index of them. Creation builds the volume in the pool's tmp area and moves it into place only after
 * its record is durable; deletion marks the record, moves the data to the trash, then forgets the
 * record. Loading a pool (pool-loader.ts) finishes or rolls back whatever a crash interrupted; when
 * that happens is the PoolSupervisor's call.
 */
export class VolumeManager {
  readonly locks = new KeyedLock();
  private readonly pools = new Map<string, PoolState>();
  private readonly index = new Map<string, VolumeRecord>();
  private readonly snapshots = new Map<string, SnapshotRecord>();
  /** hostpath-provisioner volumes and snapshots served without a record of their own yet (see recordHpp). */
  private readonly unrecorded = new Set<string>();
  private readonly unrecordedSnapshots = new Set<string>();
  private readonly trash: Trash;
  private readonly supervisor: PoolSupervisor;
  /** Preallocations under way (hpp_preallocation_remaining_bytes). */
  readonly preallocations = new PreallocationTracker();

  /** Labels a built volume for containers (SELinux hosts); undefined where there is nothing to label. */
  private readonly labelVolume?: (target: string) => Promise<void>;

  constructor(
    readonly node: string,
    pools: Pool[],
    /** What the volumes ask of the OS; the pools are given the same. */
    readonly host: Host,
    private readonly log: Logger,
    opts: { labelVolume?: ((target: string) => Promise<void>) | null; supervisor?: SupervisorOptions } = {},
  ) {
    this.trash = new Trash(log, host.mounts);
    this.labelVolume =
      opts.labelVolume === undefined ? (host.files.selinuxEnabled() ? (target) => host.files.labelForContainers(target) : undefined) : (opts.labelVolume ?? undefined);
    if (this.labelVolume) log.info({ context: CONTAINER_FILE_CONTEXT }, 'SELinux is on: new, restored and cloned volumes are labelled for containers');
    for (const p of pools) this.pools.set(p.name, this.newState(p));
    this.supervisor = new PoolSupervisor([...this.pools.values()].map((st) => this.lifecycle(st)), log, opts.supervisor);
  }

  private newState(p: Pool): PoolState {
    return newPoolState(p, this.newCapacity(p));
  }

  private newCapacity(p: Pool): CapacityTracker {
    return new CapacityTracker(p, () => this.volumesIn(p.name), this.capacityError(p.name), () => this.supervisor.quota(p.name), () => this.host.mounts.points());
  }

  private lifecycle(st: PoolState): PoolLifecycle {
    return {
      name: st.pool.name,
      load: () => this.load(st),
      intact: () => exists(st.pool.volumesDir),
      unload: () => this.unload(st),
      missingPath: () => st.pool.missingPath(),
    };
  }

  poolList(): Pool[] {
    return [...this.pools.values()].map((s) => s.pool);
  }

  getPool(name: string): Pool | undefined {
    return this.pools.get(name)?.pool;
  }

  /** The pool requests naming none go to: the only pool, or the one with the legacy name. */
  defaultPool(): Pool | undefined {
    if (this.pools.size === 1) return [...this.pools.values()][0]!.pool;
    return this.pools.get(LEGACY_POOL_NAME)?.pool;
  }

  /** The pool a request names, or the only/legacy pool when it names none. */
  resolvePool(name: string | undefined): Pool {
    if (name) {
      const st = this.pools.get(name);
      if (!st) {
        throw invalidInput(`storage pool ${JSON.stringify(name)} is not configured on node ${this.node}; known pools: ${[...this.pools.keys()].join(', ')}`);
      }
      return st.pool;
    }
    const fallback = this.defaultPool();
    if (fallback) return fallback;
    throw invalidInput(`parameter storagePool is required: node ${this.node} has pools ${[...this.pools.keys()].join(', ')}`);
  }

  /** Prepare and reconcile every pool that is there; the supervisor retries the others. */
  async start(): Promise<void> {
    await this.supervisor.start();
  }

  /**
   * For calls that need the pool: resolves once it is ready, asking the supervisor to prepare it now if
   * it is not. Throws UNAVAILABLE (or what the preparation failed with) while it cannot be.
   */
  async ensureLoaded(poolName: string): Promise<void> {
    await this.ready(poolName);
  }

  private async ready(poolName: string): Promise<ReadyPool> {
    const st = this.pools.get(poolName);
    if (!st) throw invalidInput(`storage pool ${poolName} is not configured`);
    const { quota } = await this.supervisor.ensure(poolName);
    return { st, quota };
  }

  /** The supervisor's state of a pool, once a preparation under way has finished or `waitMs` passed; starts none. */
  poolState(poolName: string, waitMs = 0): Promise<PoolStateView> {
    return this.supervisor.settled(poolName, waitMs);
  }

  /** The quota backend of a ready pool. */
  quotaOf(poolName: string): QuotaBackend | undefined {
    return this.supervisor.quota(poolName);
  }

  /** A pool's load, run by the supervisor (one at a time per pool): prepare, reconcile, empty the trash. */
  private async load(st: PoolState): Promise<Prepared> {
    const poolName = st.pool.name;
    const prepared = await st.pool.prepare();
    if (!prepared.ready) throw unavailable(prepared.reason);
    const { volumes, snapshots } = await loadPool(st, { host: this.host, node: this.node, trash: this.trash, log: this.log });
    const hpp = await this.discoverHpp(st, volumes, snapshots);
    for (const snap of snapshots) this.snapshots.set(snap.id, snap);
    for (const rec of volumes) this.index.set(rec.id, rec);
    for (const snap of hpp.snapshots) {
      this.snapshots.set(snap.id, snap);
      this.unrecordedSnapshots.add(snap.id);
    }
    for (const rec of hpp.volumes) {
      this.index.set(rec.id, rec);
      this.unrecorded.add(rec.id);
    }
    prepared.quota.projectIdsBelow(Math.max(0, ...volumes.map((r) => (r.projectId ?? 0) + 1)));
    // Trash is emptied before serving so that quota usage and free space are true from the start.
    await this.trash.sweepNow(st.pool);
    this.log.info({ pool: poolName, root: st.pool.root, volumes: volumes.length + hpp.volumes.length, snapshots: snapshots.length + hpp.snapshots.length }, 'pool loaded');
    return { quota: prepared.quota, ...(prepared.onRootFilesystem !== undefined ? { onRootFilesystem: prepared.onRootFilesystem } : {}) };
  }

  /**
   * The hostpath-provisioner volumes and snapshots of a pool being loaded that have no record yet (those
   * that have one are among `volumes` and `snapshots` already, origin 'hpp'); sets where they are.
   */
  private async discoverHpp(st: PoolState, volumes: VolumeRecord[], snapshots: SnapshotRecord[]): Promise<{ volumes: VolumeRecord[]; snapshots: SnapshotRecord[] }> {
    const { pool } = st;
    const ours = topLevelNames(volumes);
    const where = await hppDirOf(pool.root, pool.hppVolumes, ours);
    st.hppDir = where.dir;
    if (where.note) this.log.warn({ pool: pool.name, hppVolumes: pool.hppVolumes, why: where.note }, 'no hostpath-provisioner volumes are served from this pool');
    if (!where.dir) return { volumes: [], snapshots: [] };
    const recorded = new Set([...volumes, ...snapshots].filter((r) => r.origin === 'hpp').map((r) => r.name));
    const taken = new Set([...volumes, ...snapshots].filter((r) => r.origin !== 'hpp').map((r) => r.name));
    if (where.dir === '.') for (const n of ours) taken.add(n);
    const rootIsMount = (await this.host.mounts.points()).has(pool.root);
    const scan = await scanHpp(pool.root, where.dir, { pool: pool.name, node: this.node }, taken, { rootIsMount });
    for (const s of scan.skipped) this.log.warn({ pool: pool.name, path: s.path, why: s.why }, 'not served as a hostpath-provisioner volume');
    const found = { volumes: scan.volumes.filter((v) => !recorded.has(v.name)), snapshots: scan.snapshots.filter((v) => !recorded.has(v.name)) };
    this.log.info(
      { pool: pool.name, dir: path.join(pool.root, where.dir), volumes: scan.volumes.length, snapshots: scan.snapshots.length },
      'serving hostpath-provisioner volumes in place',
    );
    return found;
  }

  /**
   * An id that is not of this driver's form may be a hostpath-provisioner volume (its PV name) that a
   * pool holds: looked for in every pool that may have some. UNAVAILABLE, not "no such volume", while
   * a pool that could hold it is not ready: a DeleteVolume answered OK then would leave its data.
   */
  private async findHpp<T>(id: string, lookup: (st: PoolState, dir: string) => Promise<T | undefined>): Promise<T | undefined> {
    if (!isValidName(id)) return undefined;
    const waiting: string[] = [];
    for (const st of this.pools.values()) {
      if (st.pool.hppVolumes === 'none') continue;
      try {
        await this.supervisor.ensure(st.pool.name);
      } catch (err) {
        waiting.push(`${st.pool.name} (${err instanceof Error ? err.message : String(err)})`);
        continue;
      }
      // HPP's directory may have appeared since the pool was loaded (auto: `csi` made later).
      st.hppDir ??= (await hppDirOf(st.pool.root, st.pool.hppVolumes, topLevelNames(this.volumesIn(st.pool.name)))).dir;
      if (st.hppDir === undefined) continue;
      const hit = await lookup(st, st.hppDir);
      if (hit) return hit;
    }
    if (waiting.length > 0) throw unavailable(`${id} is not an id of this driver's form, and pools that may hold it as a hostpath-provisioner volume are not ready: ${waiting.join('; ')}`);
    return undefined;
  }

  /** Gives a hostpath-provisioner volume its record before the first change to it is made (durable, atomic). */
  private async recordHpp(st: PoolState, rec: VolumeRecord): Promise<void> {
    if (!this.unrecorded.has(rec.id)) return;
    await st.store.write(toStored({ ...rec, publications: {} }));
    this.unrecorded.delete(rec.id);
    this.log.info({ pool: rec.pool, volume: rec.id, data: rec.data }, 'recorded hostpath-provisioner volume (its data stays where it is)');
  }

  private async recordHppSnapshot(st: PoolState, snap: SnapshotRecord): Promise<void> {
    if (!this.unrecordedSnapshots.has(snap.id)) return;
    await st.snapStore.write(snap);
    this.unrecordedSnapshots.delete(snap.id);
  }

  /**
   * The pool's metadata vanished under us (the directory was removed, or the disk went away): forget
   * what we knew of it, so that it is loaded afresh, or reported UNAVAILABLE, instead of failing with
   * ENOENT on every call.
   */
  private unload(st: PoolState): void {
    this.log.error({ pool: st.pool.name, root: st.pool.root }, 'pool metadata is gone; forgetting its volumes and loading it again');
    for (const [id, rec] of this.index) if (rec.pool === st.pool.name) this.index.delete(id), this.unrecorded.delete(id);
    for (const [id, snap] of this.snapshots) if (snap.pool === st.pool.name) this.snapshots.delete(id), this.unrecordedSnapshots.delete(id);
    st.hppDir = undefined;
    st.capacity = this.newCapacity(st.pool);
    st.pubLog.close();
    void st.pool.release();
  }

  private capacityError(pool: string): (err: unknown) => void {
    return (err) => this.log.warn({ pool, err: err instanceof Error ? err.message : String(err) }, 'capacity recompute failed; GetCapacity answers from the last one');
  }

  dataPath(pool: Pool, rec: VolumeRecord): string {
    return pool.resolveInside(rec.data);
  }

  get(id: string): VolumeRecord | undefined {
    return this.index.get(id);
  }

  /** Looks a volume up by id, loading its pool first if it was not reachable before. */
  async find(id: string): Promise<VolumeRecord | undefined> {
    const hit = this.index.get(id);
    if (hit) return hit;
    const ref = parseVolumeId(id);
    if (!ref) {
      return this.findHpp(id, async (st, dir) => {
        const rec = this.index.get(id) ?? (await findHppVolume(st.pool.root, dir, id, { pool: st.pool.name, node: this.node }));
        if (rec && !this.index.has(id)) {
          if (exists(recordFile(st.pool.volumesDir, id)) || exists(recordFile(st.pool.snapshotRecordsDir, id))) return undefined;
          this.index.set(id, rec);
          this.unrecorded.add(id);
        }
        return rec;
      });
    }
    if (ref.node !== this.node || !this.pools.has(ref.pool)) return undefined;
    await this.ensureLoaded(ref.pool);
    return this.index.get(id);
  }

  /** The volume of that name in any pool (names are unique across pools). */
  findByName(name: string): VolumeRecord | undefined {
    for (const pool of this.pools.keys()) {
      const rec = this.index.get(formatVolumeId({ node: this.node, pool, name }));
      if (rec) return rec;
    }
    return undefined;
  }

  private volumesIn(pool: string): VolumeRecord[] {
    return [...this.index.values()].filter((v) => v.pool === pool);
  }

  list(): VolumeRecord[] {
    return [...this.index.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /**
   * Create, or return the existing volume of that name when it is compatible. Caller holds the lock.
   * A call cancelled while the volume is built stops its tools and leaves nothing behind.
   */
  async create(spec: CreateSpec, compatible: (existing: VolumeRecord) => string | undefined, cx: CallContext): Promise<VolumeRecord> {
    const { st, quota } = await this.ready(spec.pool.name);
    const id = formatVolumeId({ node: this.node, pool: spec.pool.name, name: spec.name });
    const existing = this.index.get(id);
    if (existing) {
      const why = compatible(existing);
      if (why) throw conflict(`volume ${spec.name} already exists with ${why}`);
      return existing;
    }
    const pool = spec.pool;
    const dataPath = pool.resolveInside(spec.data);
    const hpp = this.index.get(spec.name);
    if (hpp?.origin === 'hpp') throw conflict(`volume name ${spec.name} is taken by a hostpath-provisioner volume in pool ${hpp.pool} (${hpp.data})`);
    if (exists(dataPath)) {
      throw conflict(`pool ${pool.name} already has ${dataPath}, which belongs to no volume of this driver`);
    }
    if (exists(recordFile(pool.volumesDir, spec.name))) throw conflict(`pool ${pool.name} already has a record named ${spec.name}`);
    const release = await this.locks.withKey(capacityKey(pool.name), async () => {
      const figs = await st.capacity.figures();
      const note = spec.capacityNote ? ` (${spec.capacityNote})` : '';
      if (spec.capacityBytes > figs.totalBytes) {
        throw outOfRange(`${spec.capacityBytes} bytes${note} is more than pool ${pool.name} holds (${figs.totalBytes} bytes)`);
      }
      if (spec.capacityBytes > figs.availableBytes) {
        throw noSpace(
          `pool ${pool.name} can promise ${figs.availableBytes} bytes (free ${figs.freeBytes}, reserved for existing volumes ${figs.reservedBytes}, over-commit ${pool.overcommitRatio}), not ${spec.capacityBytes}${note}`,
        );
      }
      return st.capacity.reserve(id, spec.capacityBytes);
    });
    try {
      const rec = await this.build(st, quota, spec, id, dataPath, cx);
      release(true);
      return rec;
    } catch (err) {
      release(false);
      throw err;
    }
  }

  private async build(st: PoolState, quota: QuotaBackend, spec: CreateSpec, id: string, dataPath: string, cx: CallContext): Promise<VolumeRecord> {
    const { host } = this;
    const pool = spec.pool;
    const building = volumeBuildPath(pool, spec.name);
    if (exists(building)) await fsp.rm(building, { recursive: true, force: true });
    let projectId: number | undefined;
    let preallocation: PreallocationMethod = 'none';
    let copyMethod: CopyMethod | undefined;
    // Anything that fails before the record is written leaves nothing behind (and no quota limit).
    const abandon = async (err: unknown): Promise<never> => {
      await removeTree(building, await host.mounts.points()).catch((e) =>
        cx.log.warn({ building, err: String(e) }, 'could not remove an abandoned build; the next start will'),
      );
      // Not with the call's signal: the clean-up of a cancelled call must still run.
      await quota.release(projectId, uncancellable(cx)).catch(() => {});
      throw err;
    };
    try {
      if (spec.mode === 'block' && spec.source) {
        copyMethod = await host.data.copyFile(spec.source.dataPath, building, cx);
        const copied = await growFile(building, spec.capacityBytes);
        if (spec.preallocate) preallocation = await this.preallocating(pool.name, spec.name, cx, (pcx) => host.data.preallocate(building, copied, spec.capacityBytes - copied, pcx));
      } else if (spec.mode === 'block') {
        await buildBlockImage(building, spec.capacityBytes);
        if (spec.preallocate) preallocation = await this.preallocating(pool.name, spec.name, cx, (pcx) => host.data.preallocate(building, 0n, spec.capacityBytes, pcx));
      } else {
        projectId = await quota.createDirectory(building, spec.capacityBytes, cx);
        if (spec.source) copyMethod = await host.data.copyTree(spec.source.dataPath, building, cx);
        if (spec.diskImageOverhead) {
          const size = diskImageSize(spec.capacityBytes, spec.diskImageOverhead);
          if (size < MIN_DISK_IMAGE_BYTES) throw internal(`disk.img of ${spec.name} would have ${size} bytes: its capacity must be rounded up first`);
          // A restored or cloned image is grown here, before the record commits; never shrunk.
          preallocation = await this.preallocating(pool.name, spec.name, cx, (pcx) => ensureDiskImage(host, building, size, spec.preallocate, pcx));
        }
        // A block copy was flushed by growFile; a copied tree is flushed here, every file and directory.
        if (spec.source) await fsyncTree(building);
      }
      // Copies and new files got their labels from where they came from: every volume is labelled as a whole.
      if (this.labelVolume) await this.labelVolume(building);
    } catch (err) {
      return abandon(err);
    }
    const rec: VolumeRecord = {
      version: 1,
      id,
      name: spec.name,
      pool: pool.name,
      node: this.node,
      mode: spec.mode,
      data: spec.data,
      capacityBytes: spec.capacityBytes.toString(),
      parameters: spec.parameters,
      ...(projectId !== undefined ? { projectId } : {}),
      preallocation,
      ...(spec.diskImageOverhead ? { diskImage: { overhead: spec.diskImageOverhead.text } } : {}),
      ...(spec.source ? { contentSource: { kind: spec.source.kind, id: spec.source.id, method: copyMethod! } } : {}),
      ...(spec.pvc ? { pvc: { namespace: spec.pvc.namespace, name: spec.pvc.name } } : {}),
      createdAt: new Date().toISOString(),
      state: 'ready',
      publications: {},
    };
    try {
      await st.store.write(toStored(rec));
    } catch (err) {
      return abandon(err);
    }
    // The record is the commit point: from here a crash is finished by reconcile(). The move is not
    // fsynced: if a power cut undoes it, reconcile() finds the data still in tmp/ and moves it again.
    renameSync(building, dataPath);
    this.index.set(id, rec);
    return rec;
  }

  /**
   * Runs a preallocation of volume `volume` for the call `cx`: followed by the tracker while it runs, its
   * progress logged to the call's log with the volume's name (unless the call's log names it already).
   */
  async preallocating<T>(pool: string, volume: string, cx: CallContext, fn: (pcx: PreallocateContext) => Promise<T>): Promise<T> {
    const job = this.preallocations.open(pool, volume);
    const bound = cx.log.bindings();
    const log = 'volume' in bound ? cx.log : cx.log.child({ volume });
    try {
      return await fn({ ...cx, log, onProgress: (done, total) => job.progress(done, total) });
    } finally {
      job.end();
    }
  }

  /** Delete a volume this node holds. Caller holds the lock. */
  async delete(rec: VolumeRecord, cx: CallContext): Promise<void> {
    const { st, quota } = await this.ready(rec.pool);
    const published = Object.keys(rec.publications);
    if (published.length > 0) {
      throw precondition(`volume ${rec.id} is still published at ${published.join(', ')}`);
    }
    const dataPath = this.dataPath(st.pool, rec);
    if (rec.mode === 'block') {
      // A device another process still holds open keeps the image (in the trash) until it is closed.
      reportDeferredDetaches(await detachAll(this.host, dataPath, cx), cx.log, { volume: rec.id });
    } else {
      const below = mountsBelow(await this.host.mounts.table(), dataPath);
      if (below.length > 0) {
        throw precondition(`volume ${rec.id} has mounts inside it: ${below.map((m) => m.mountPoint).join(', ')}`);
      }
    }
    await this.recordHpp(st, rec);
    // The durable 'deleting' mark (the record renamed) commits the delete; whatever a crash or power cut undoes after it,
    // reconcile() finishes. The data must be in the trash for good before its record goes (else a
    // power cut could leave data no record owns), but the record's unlink need not be durable.
    await st.store.markDeleting(rec.name);
    await this.trash.put(st.pool, dataPath);
    await st.store.remove(rec.name, { durable: false });
    this.index.delete(rec.id);
    st.capacity.forget(rec.id);
    // Past the commit point: finished whatever the caller does now.
    await quota.release(rec.projectId, uncancellable(cx)).catch((err) => cx.log.warn({ volume: rec.id, err: String(err) }, 'could not lift quota limit'));
    this.trash.schedule(st.pool);
  }

  /** What a ready pool can promise now (see CapacityTracker). Only reads: a pool not ready is UNAVAILABLE, not prepared. */
  async capacityOf(poolName: string): Promise<CapacityFigures> {
    const st = this.pools.get(poolName);
    if (!st) throw invalidInput(`storage pool ${poolName} is not configured`);
    const state = this.supervisor.state(poolName);
    if (state.phase !== 'ready') throw unavailable(state.reason ?? `pool ${poolName} is ${state.phase}`);
    return st.capacity.figures();
  }

  /**
   * Grow a volume to `capacity` bytes: the image file or the quota limit first, the record after, so a
   * crash in between is finished by the CO's retry. Caller holds the volume's lock.
   */
  async expand(rec: VolumeRecord, capacity: bigint, cx: CallContext): Promise<VolumeRecord> {
    const { st, quota } = await this.ready(rec.pool);
    const current = BigInt(rec.capacityBytes);
    if (capacity <= current) return rec;
    const delta = capacity - current;
    await this.recordHpp(st, rec);
    const release = await this.locks.withKey(capacityKey(rec.pool), async () => {
      const figs = await st.capacity.figures();
      if (delta > figs.availableBytes) {
        throw noSpace(`pool ${rec.pool} can promise ${figs.availableBytes} more bytes, not the ${delta} this expansion needs`);
      }
      return st.capacity.reserve(rec.id, delta);
    });
    try {
      const data = this.dataPath(st.pool, rec);
      let projectId = rec.projectId;
      if (rec.mode === 'block') {
        await growFile(data, capacity);
        if (wantsPreallocation(rec)) await this.preallocating(rec.pool, rec.name, cx, (pcx) => this.host.data.preallocate(data, current, delta, pcx));
      } else if (rec.origin === 'hpp' && projectId === undefined) {
        // HPP made a plain directory: a project quota can take it as it is, a btrfs qgroup cannot (not a subvolume).
        const limited = await quota.limitExisting(data, capacity, cx);
        projectId = limited.projectId;
        if (!limited.enforced) cx.log.warn({ volume: rec.id, why: limited.why }, 'size of hostpath-provisioner volume recorded, not enforced');
      } else {
        await quota.setLimit(data, rec.projectId, capacity, cx);
      }
      const grown = { ...rec, capacityBytes: capacity.toString(), ...(projectId !== undefined ? { projectId } : {}) };
      await this.update(grown);
      release(true);
      return grown;
    } catch (err) {
      release(false);
      throw err;
    }
  }

  /** Looks a snapshot up by id, loading (or re-checking) its pool first, as the calls on it will. */
  async findSnapshot(id: string): Promise<SnapshotRecord | undefined> {
    const ref = parseVolumeId(id);
    if (ref && ref.node === this.node && this.pools.has(ref.pool)) await this.ensureLoaded(ref.pool);
    if (ref || this.snapshots.has(id)) return this.snapshots.get(id);
    return this.findHpp(id, async (st, dir) => {
      const snap = this.snapshots.get(id) ?? (await findHppSnapshot(st.pool.root, dir, id, { pool: st.pool.name, node: this.node }));
      if (snap && !this.snapshots.has(id)) {
        if (exists(recordFile(st.pool.snapshotRecordsDir, id)) || exists(recordFile(st.pool.volumesDir, id))) return undefined;
        this.snapshots.set(id, snap);
        this.unrecordedSnapshots.add(id);
      }
      return snap;
    });
  }

  snapshotByName(name: string): SnapshotRecord | undefined {
    for (const s of this.snapshots.values()) if (s.name === name) return s;
    return undefined;
  }

  listSnapshots(): SnapshotRecord[] {
    return [...this.snapshots.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /**
   * A point-in-time copy of `source` in its pool's snapshot area: reflinked where the filesystem
   * can (O(1)), else a sparse copy; built in tmp/, committed by its record, then moved into place.
   * Caller holds the locks of the source and of the snapshot name.
   */
  async createSnapshot(source: VolumeRecord, name: string, cx: CallContext): Promise<SnapshotRecord> {
    const { st } = await this.ready(source.pool);
    const pool = st.pool;
    const id = formatVolumeId({ node: this.node, pool: pool.name, name });
    const data = snapshotDataDir(name);
    const dataPath = pool.resolveInside(data);
    const building = snapshotBuildPath(pool, name);
    await fsp.rm(building, { recursive: true, force: true });
    const sourcePath = this.dataPath(pool, source);
    let method: CopyMethod;
    try {
      if (source.mode === 'block') {
        method = await this.host.data.copyFile(sourcePath, building, cx);
      } else {
        await fsp.mkdir(building, { mode: 0o700 });
        method = await this.host.data.copyTree(sourcePath, building, cx);
      }
      await fsyncTree(building);
    } catch (err) {
      await fsp.rm(building, { recursive: true, force: true });
      throw err;
    }
    const rec: SnapshotRecord = {
      version: 1,
      id,
      name,
      pool: pool.name,
      node: this.node,
      sourceVolumeId: source.id,
      mode: source.mode,
      data,
      sizeBytes: source.capacityBytes,
      createdAt: new Date().toISOString(),
      method,
      ...(source.diskImage ? { diskImage: source.diskImage } : {}),
      state: 'ready',
    };
    await st.snapStore.write(rec);
    await fsp.rename(building, dataPath);
    await fsyncDir(path.dirname(dataPath));
    this.snapshots.set(id, rec);
    return rec;
  }

  async deleteSnapshot(snap: SnapshotRecord): Promise<void> {
    const { st } = await this.ready(snap.pool);
    await this.recordHppSnapshot(st, snap);
    await st.snapStore.markDeleting(snap.name);
    await this.trash.put(st.pool, st.pool.resolveInside(snapshotRemovalPath(snap)));
    await st.snapStore.remove(snap.name);
    this.snapshots.delete(snap.id);
    this.trash.schedule(st.pool);
  }

  snapshotDataPath(snap: SnapshotRecord): string {
    return this.pools.get(snap.pool)!.pool.resolveInside(snap.data);
  }

  /** Persist a changed record; memory follows only once the disk has it. */
  async update(rec: VolumeRecord): Promise<void> {
    await this.stateOf(rec).store.write(toStored(rec));
    this.unrecorded.delete(rec.id);
    this.index.set(rec.id, rec);
  }

  /** Persist a volume's changed publications (soft state: see PublicationLog). */
  async updatePublications(rec: VolumeRecord): Promise<void> {
    const st = this.stateOf(rec);
    // Publications are replayed onto records on the next start: the volume must have one first.
    await this.recordHpp(st, rec);
    const full = st.pubLog.append(rec.name, rec.publications);
    this.index.set(rec.id, rec);
    if (full) st.pubLog.compact(this.publicationsOf(st.pool.name));
  }

  private publicationsOf(pool: string): Map<string, Publications> {
    return new Map(this.volumesIn(pool).map((r) => [r.name, r.publications]));
  }

  private stateOf(rec: VolumeRecord): PoolState {
    const st = this.pools.get(rec.pool);
    if (!st) throw internal(`volume ${rec.id} names unknown pool ${rec.pool}`);
    return st;
  }

  /** Resolves when background trash removal is done, scheduled sweeps included (shutdown and tests). */
  async idle(): Promise<void> {
    await this.trash.idle();
  }

  /** Stops the supervisor, waits for background work and lets go of the pools' daemon locks. */
  async close(): Promise<void> {
    await this.supervisor.close();
    await this.idle();
    for (const st of this.pools.values()) {
      st.pubLog.close();
      await st.pool.release();
    }
  }
}
