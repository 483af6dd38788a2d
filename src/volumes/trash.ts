import { randomBytes } from 'node:crypto';
import { renameSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../observe/logger.js';
import type { Pool } from '../pools/pool.js';
import { trashEntryPath } from '../format/layout.js';
import { fsyncDir } from '../system/atomic-file.js';
import type { HostMounts } from '../system/host.js';
import { removeTree } from '../system/walk.js';

const SWEEP_DELAY_MS = 200;

/**
 * Deleted data on its way out: moved into `<pool>/.hpp/trash/` in one rename (what a delete waits
 * for), removed later in the background, one sweep after another.
 */
export class Trash {
  private sweeping: Promise<void> = Promise.resolve();
  private readonly scheduled = new Map<string, { pool: Pool; timer: NodeJS.Timeout }>();

  constructor(
    private readonly log: Logger,
    private readonly mounts: HostMounts,
  ) {}

  /**
   * Move `dataPath` into the pool's trash and make the move durable (both directories: the data may
   * live in the pool root, .hpp/block or .hpp/snapshots); data already gone is fine.
   */
  async put(pool: Pool, dataPath: string): Promise<void> {
    const dest = trashEntryPath(pool, dataPath, Date.now(), randomBytes(3).toString('hex'));
    try {
      renameSync(dataPath, dest);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await Promise.all([fsyncDir(path.dirname(dataPath)), fsyncDir(pool.trashDir)]);
  }

  /** Empty the pool's trash now (after the sweeps already queued); resolves when it is done. */
  sweepNow(pool: Pool): Promise<void> {
    this.sweeping = this.sweeping.then(async () => {
      try {
        // Never follow a symlink or descend into a mount that somehow ended up in the trash.
        const mountPoints = await this.mounts.points();
        for (const entry of await fsp.readdir(pool.trashDir)) {
          await removeTree(path.join(pool.trashDir, entry), mountPoints);
        }
      } catch (err) {
        this.log.warn({ pool: pool.name, err: String(err) }, 'trash sweep failed; retried on next delete or start');
      }
    });
    return this.sweeping;
  }

  /**
   * Empty the pool's trash a little later, once for a burst of deletes: removing the data is the slow
   * part of a delete and nobody waits for it, so it stays off the path of the calls that follow.
   */
  schedule(pool: Pool): void {
    if (this.scheduled.has(pool.name)) return;
    const timer = setTimeout(() => {
      this.scheduled.delete(pool.name);
      void this.sweepNow(pool);
    }, SWEEP_DELAY_MS);
    timer.unref();
    this.scheduled.set(pool.name, { pool, timer });
  }

  /** Runs the scheduled sweeps now and resolves when every sweep is done (shutdown and tests). */
  async idle(): Promise<void> {
    for (const [name, { pool, timer }] of this.scheduled) {
      clearTimeout(timer);
      this.scheduled.delete(name);
      void this.sweepNow(pool);
    }
    await this.sweeping;
  }
}
