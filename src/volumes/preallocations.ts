/** A preallocation under way: what is still to be allocated (hpp_preallocation_remaining_bytes). */
export interface PreallocationInProgress {
  pool: string;
  /** The volume's name. */
  volume: string;
  totalBytes: bigint;
  remainingBytes: bigint;
}

/** One preallocation, as its caller follows it. */
export interface PreallocationJob {
  /** What system/preallocate.ts reports (its onProgress). */
  progress(doneBytes: bigint, totalBytes: bigint): void;
  /** Done, failed or cancelled: it is no longer under way. */
  end(): void;
}

/**
 * The preallocations under way on this node (disk.img of new, restored and cloned volumes, block
 * images, and the growth of expanded ones), for the metrics: a scrape reads them, nothing is polled.
 */
export class PreallocationTracker {
  private readonly jobs = new Set<PreallocationInProgress>();

  /** A job that counts once its first progress report says how much it has to allocate. */
  open(pool: string, volume: string): PreallocationJob {
    const job: PreallocationInProgress = { pool, volume, totalBytes: 0n, remainingBytes: 0n };
    return {
      progress: (done, total) => {
        job.totalBytes = total;
        job.remainingBytes = total > done ? total - done : 0n;
        this.jobs.add(job);
      },
      end: () => {
        this.jobs.delete(job);
      },
    };
  }

  list(): PreallocationInProgress[] {
    return [...this.jobs].map((j) => ({ ...j }));
  }
}
