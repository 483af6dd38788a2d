import type { Logger } from '../observe/logger.js';
import { fsyncDir } from '../system/atomic-file.js';
import type { RecordStore } from './store.js';
import type { StoredVolumeRecord } from '../format/records.js';

/** How long the tail of a delete may wait, so that a burst of deletes shares one batch. */
const BATCH_DELAY_MS = 50;

interface Pending {
  name: string;
  dataPath: string;
  /** Directories whose fsync makes the move of the data into the trash durable (none: it was gone). */
  dirs: string[];
}

/**
 * The tail of the deletes of one pool, done after they have answered and shared by those that came
 * together: one fsync of each directory their data left and of the trash (making the moves durable),
 * then the unlink of their `.deleting` marks.
 *
 * Why a delete may answer before its data's move to the trash is durable: its commit point, the
 * `.deleting` rename, is. Until the mark is unlinked, a start (after kill -9 or a power cut) finishes
 * the delete from it (the data moved to the trash again if a power cut put it back, the mark removed);
 * the mark is unlinked only after the fsyncs, so a power cut can never leave data that no record owns.
 * What the batch changes: a delete waits for one fsync instead of three, and the marks of finished
 * deletes live up to BATCH_DELAY_MS plus two fsyncs longer. A CreateVolume of a name (or data path)
 * whose delete is still pending waits for it (settled()): else a power cut could bring the old data
 * back under the new volume's path.
 */
export class DeleteFinisher {
  private readonly pending = new Map<string, Pending>();
  private readonly inBatch = new Map<string, Pending>();
  private batch: Promise<void> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  /** Why the last batch failed; its deletes stay pending and are retried with the next one. */
  private failure?: unknown;

  constructor(
    private readonly store: RecordStore<StoredVolumeRecord>,
    private readonly log: Logger,
    private readonly pool: string,
  ) {}

  add(name: string, dataPath: string, dirs: string[]): void {
    this.pending.set(name, { name, dataPath, dirs });
    if (!this.timer) {
      this.timer = setTimeout(() => void this.run(), BATCH_DELAY_MS);
      // close() runs what is pending (idle()); a start after an exit without it finishes it from the marks.
      this.timer.unref();
    }
  }

  /** The pool's metadata is gone (unloaded): its next load finishes these deletes from their marks. */
  drop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending.clear();
    this.failure = undefined;
  }

  /**
   * Resolves once no delete of `name`, or of data at `dataPath`, is waiting for its tail (started now
   * if one is); throws what the batch failed with when it could not be finished.
   */
  async settled(name: string, dataPath: string): Promise<void> {
    for (let tries = 0; this.waiting(name, dataPath); tries++) {
      if (tries > 0 && this.failure !== undefined) {
        throw new Error(`the delete of ${name} (or of data at ${dataPath}) is not finished: ${String(this.failure)}`, { cause: this.failure });
      }
      await this.run();
    }
  }

  /** Runs what is pending now and resolves when every batch is done (shutdown and tests). */
  async idle(): Promise<void> {
    while (this.pending.size > 0 || this.inBatch.size > 0) {
      const before = this.failure;
      await this.run();
      if (this.failure !== undefined && this.failure === before) return;
    }
  }

  private waiting(name: string, dataPath: string): boolean {
    for (const m of [this.pending, this.inBatch]) {
      if (m.has(name)) return true;
      for (const p of m.values()) if (p.dataPath === dataPath) return true;
    }
    return false;
  }

  /** Start a batch of what is pending after the one under way; resolves when it ends. */
  private run(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.batch = this.batch.then(() => this.finish());
    return this.batch;
  }

  private async finish(): Promise<void> {
    if (this.pending.size === 0) return;
    for (const [k, p] of this.pending) this.inBatch.set(k, p);
    this.pending.clear();
    try {
      await Promise.all([...new Set([...this.inBatch.values()].flatMap((p) => p.dirs))].map(fsyncDir));
      // Not made durable: a power cut bringing a mark back makes the next start finish that delete again.
      for (const p of this.inBatch.values()) this.store.removeDeleting(p.name);
      this.failure = undefined;
    } catch (err) {
      this.failure = err;
      this.log.error({ pool: this.pool, deletes: this.inBatch.size, err: String(err) }, 'could not make deleted data durably trashed; the deletes are retried, and the next start finishes them');
      for (const [k, p] of this.inBatch) if (!this.pending.has(k)) this.pending.set(k, p);
      if (!this.timer) {
        this.timer = setTimeout(() => void this.run(), 1000);
        this.timer.unref();
      }
    } finally {
      this.inBatch.clear();
    }
  }
}
