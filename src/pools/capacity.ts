import { promises as fsp } from 'node:fs';
import { readMounts } from '../system/mount.js';
import { diskUsage } from '../system/walk.js';
import type { VolumeRecord } from '../volumes/record.js';
import type { Pool } from './pool.js';

export interface CapacityFigures {
  totalBytes: bigint;
  freeBytes: bigint;
  /** What existing volumes may still grow into, before the over-commit ratio. */
  reservedBytes: bigint;
  /** What a new volume can be promised: free − reserved ÷ ratio, never below 0. */
  availableBytes: bigint;
}

const REFRESH_MS = 2_000;

/**
 * The promise-able capacity of one pool. Free space is read fresh on every call (statfs is cheap);
 * how much existing volumes may still grow into needs a quota report and a stat per block image, so it
 * is recomputed at most every 2 s and adjusted in memory as volumes come and go in between.
 */
export class CapacityTracker {
  private reserved = 0n;
  private computedAt = 0;
  /** Capacity promised to creates still in flight. */
  private pending = 0n;

  constructor(
    private readonly pool: Pool,
    private readonly volumes: () => VolumeRecord[],
  ) {}

  async figures(): Promise<CapacityFigures> {
    if (Date.now() - this.computedAt > REFRESH_MS) await this.recompute();
    const { totalBytes, availableBytes: freeBytes } = await this.pool.capacity();
    const reservedBytes = this.reserved + this.pending;
    const ratio = BigInt(Math.round(this.pool.overcommitRatio * 1000));
    let availableBytes = freeBytes - (reservedBytes * 1000n) / ratio;
    if (availableBytes < 0n) availableBytes = 0n;
    return { totalBytes, freeBytes, reservedBytes, availableBytes };
  }

  /** Hold `bytes` for a create in flight; the returned function commits (true) or drops (false) it. */
  reserve(bytes: bigint): (committed: boolean) => void {
    this.pending += bytes;
    let done = false;
    return (committed) => {
      if (done) return;
      done = true;
      this.pending -= bytes;
      if (committed) this.reserved += bytes;
    };
  }

  /** A volume went away: its reserve goes with it until the next recompute. */
  forget(rec: VolumeRecord): void {
    this.reserved -= BigInt(rec.capacityBytes);
    if (this.reserved < 0n) this.reserved = 0n;
  }

  invalidate(): void {
    this.computedAt = 0;
  }

  private async recompute(): Promise<void> {
    const lookup = this.pool.quota ? await this.pool.quota.usageLookup() : () => undefined;
    let mountPoints: Set<string> | undefined;
    let reserved = 0n;
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
          mountPoints ??= new Set((await readMounts()).map((m) => m.mountPoint));
          used = (await diskUsage(data, { mountPoints })).bytes;
        }
      }
      if (capacity > used) reserved += capacity - used;
    }
    this.reserved = reserved;
    this.computedAt = Date.now();
  }
}
