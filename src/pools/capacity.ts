import { promises as fsp } from 'node:fs';
import { readMountPoints } from '../system/mount.js';
import { diskUsage } from '../system/walk.js';
import type { VolumeRecord } from '../format/records.js';
import type { Pool } from './pool.js';
import type { QuotaBackend } from './quota.js';

export interface CapacityFigures {
  totalBytes: bigint;
  freeBytes: bigint;
  /** In use on the pool's filesystem, by volumes and anything else on it. */
  usedBytes: bigint;
  /** What existing volumes may still grow into, before the over-commit ratio. */
  reservedBytes: bigint;
  /** What a new volume can be promised: free − reserved ÷ ratio, never below 0. */
  availableBytes: bigint;
}

const REFRESH_MS = 2_000;

/**
 * The promise-able capacity of one pool. Free space is read fresh on every call (statfs is cheap).
 * What each volume may still grow into (capacity − used) needs a quota report, or a walk of the
 * directory, or a stat of the image; it is recomputed in the background at most every 2 s, and kept
 * exact in between from what this process does: a created volume reserves its whole capacity, an
 * expansion its growth, a deleted volume gives back exactly what it held. Only the first call waits.
 */
export class CapacityTracker {
  /** Reserve per volume id. */
  private reserves = new Map<string, bigint>();
  private reserved = 0n;
  private computedAt = 0;
  private refreshing?: Promise<void>;
  /** Ids changed while a recompute runs: its older view must not overwrite them. */
  private touched?: Set<string>;
  /** Capacity promised to creates still in flight. */
  private pending = 0n;

  constructor(
    private readonly pool: Pool,
    private readonly volumes: () => VolumeRecord[],
    /** A background recompute failed (figures stay those of the last good one): told, never thrown. */
    private readonly onRefreshError: (err: unknown) => void = () => {},
    /** The pool's quota backend, whose report spares walking directories; none: they are walked. */
    private readonly quota: () => QuotaBackend | undefined = () => undefined,
    /** The mount points a directory walk must not enter (the pool's host's mount table). */
    private readonly mountPoints: () => Promise<Set<string>> = readMountPoints,
  ) {}

  async figures(): Promise<CapacityFigures> {
    if (this.computedAt === 0) await this.refresh();
    else if (Date.now() - this.computedAt > REFRESH_MS) void this.refresh().catch(this.onRefreshError);
    const { totalBytes, availableBytes: freeBytes, usedBytes } = await this.pool.capacity();
    const reservedBytes = this.reserved + this.pending;
    const ratio = BigInt(Math.round(this.pool.overcommitRatio * 1000));
    let availableBytes = freeBytes - (reservedBytes * 1000n) / ratio;
    if (availableBytes < 0n) availableBytes = 0n;
    return { totalBytes, freeBytes, usedBytes, reservedBytes, availableBytes };
  }

  /** Hold `bytes` for volume `id` (a create or an expansion in flight); commit(true) keeps it, commit(false) drops it. */
  reserve(id: string, bytes: bigint): (committed: boolean) => void {
    this.pending += bytes;
    let done = false;
    return (committed) => {
      if (done) return;
      done = true;
      this.pending -= bytes;
      if (committed) this.set(id, (this.reserves.get(id) ?? 0n) + bytes);
    };
  }

  /** A volume went away: exactly its reserve goes with it. */
  forget(id: string): void {
    this.set(id, undefined);
  }

  private set(id: string, value: bigint | undefined): void {
    this.reserved -= this.reserves.get(id) ?? 0n;
    if (value === undefined) this.reserves.delete(id);
    else {
      this.reserves.set(id, value);
      this.reserved += value;
    }
    this.touched?.add(id);
  }

  private refresh(): Promise<void> {
    this.refreshing ??= this.recompute().finally(() => {
      this.refreshing = undefined;
      this.touched = undefined;
    });
    return this.refreshing;
  }

  private async recompute(): Promise<void> {
    this.touched = new Set();
    const quota = this.quota();
    const lookup = quota ? await quota.usageLookup() : () => undefined;
    let mountPoints: Set<string> | undefined;
    const computed = new Map<string, bigint>();
    for (const rec of this.volumes()) {
      const capacity = BigInt(rec.capacityBytes);
      if (capacity === 0n) continue;
      const data = this.pool.resolveInside(rec.data);
      let used = 0n;
      if (rec.mode === 'block') {
        const st = await fsp.stat(data, { bigint: true }).catch(() => undefined);
        used = st ? st.blocks * 512n : 0n;
      } else {
        // Without a quota report, walk the directory (recomputed at most every REFRESH_MS).
        const known = lookup(data, rec.projectId)?.usedBytes;
        if (known !== undefined) used = known;
        else {
          mountPoints ??= await this.mountPoints();
          used = (await diskUsage(data, { mountPoints })).bytes;
        }
      }
      computed.set(rec.id, capacity > used ? capacity - used : 0n);
    }
    // What changed while we walked is newer than what we saw.
    for (const id of this.touched ?? []) {
      const v = this.reserves.get(id);
      if (v === undefined) computed.delete(id);
      else computed.set(id, v);
    }
    this.reserves = computed;
    this.reserved = [...computed.values()].reduce((a, b) => a + b, 0n);
    this.computedAt = Date.now();
  }
}

/**
 * What GetCapacity reports for a pool: `available` rounded down to a power-of-two step of at most
 * 1/1024 of the pool's size (16 MiB on a 16 GiB pool, 1 MiB on 1 GiB).
 *
 * The exact figure moves with every provision and with file system metadata, and csi-provisioner
 * writes a CSIStorageCapacity object for every change it sees, through a client limited to a few
 * writes a second, re-checking every storage class of the node after each provision or delete
 * (kubernetes-csi/external-provisioner#1161: its queue does not fold repeated items). Under a burst of
 * provisions the exact figure kept that queue saturated, so a new storage class waited a minute for
 * its object. A rounded figure changes only when the pool really fills or empties by a step; the
 * scheduler loses at most one step of precision, and never gets a figure above what can be promised.
 * CreateVolume and expansion still admit by the exact figure.
 */
export function reportedCapacityBytes(available: bigint, total: bigint): bigint {
  if (available <= 0n) return 0n;
  let step = 1n;
  while (step * 2n <= total / 1024n) step *= 2n;
  return available - (available % step);
}
