import { promises as fsp } from 'node:fs';
import type { Logger } from '../observe/logger.js';
import { ToolError } from '../errors.js';
import { throwIfCancelled } from '../observe/call-context.js';
import { run, type ToolContext } from './exec.js';

export type PreallocationMethod = 'none' | 'fallocate' | 'full';

/** Whom a preallocation runs for: the call's log (progress lines go there) and who wants to follow it. */
export interface PreallocateContext extends ToolContext {
  log: Logger;
  /** Where the fallocate run is logged, if not `log`. */
  execLog?: Logger;
  /** Told how far the allocation is: at the start (0), after each chunk of zeros, and at the end. */
  onProgress?: (doneBytes: bigint, totalBytes: bigint) => void;
  /** How often progress is logged (default PROGRESS_CADENCE). */
  cadence?: ProgressCadence;
}

const ZERO_CHUNK = 8 * 1024 * 1024;

/** How often progress is logged: every `everyMs`, or every `everyFraction` of the range but not more often than `minMs`. */
export interface ProgressCadence {
  everyMs: number;
  everyFraction: number;
  minMs: number;
}

export const PROGRESS_CADENCE: ProgressCadence = { everyMs: 5_000, everyFraction: 0.1, minMs: 1_000 };

const MiB = 1024 * 1024;

/**
 * Progress lines of one preallocation ("preallocating": done, total, percent, MiB/s, seconds so far and
 * left) at a modest rate (PROGRESS_CADENCE), and one line at the end ("preallocated": method, bytes,
 * seconds, MiB/s). Lines go to the call's log, so they carry its request id and whatever fields its
 * context binds (the volume, the PVC).
 */
export class ProgressReporter {
  private readonly started: number;
  private lastAt: number;
  private lastDone = 0n;

  constructor(
    private readonly total: bigint,
    private readonly log: Logger,
    private readonly fields: Record<string, unknown>,
    private readonly now: () => number = Date.now,
    private readonly cadence: ProgressCadence = PROGRESS_CADENCE,
  ) {
    this.started = now();
    this.lastAt = this.started;
  }

  /** `done` bytes of the range are allocated; logs a progress line when one is due. */
  update(done: bigint): void {
    if (done >= this.total) return;
    const t = this.now();
    const since = t - this.lastAt;
    const fraction = this.total > 0n ? Number(done - this.lastDone) / Number(this.total) : 0;
    if (since >= this.cadence.everyMs || (fraction >= this.cadence.everyFraction && since >= this.cadence.minMs)) {
      this.lastAt = t;
      this.lastDone = done;
      const seconds = (t - this.started) / 1000;
      const rate = seconds > 0 ? Number(done) / seconds : 0;
      this.log.info(
        {
          ...this.fields,
          done: done.toString(),
          total: this.total.toString(),
          percent: Math.floor((Number(done) / Number(this.total)) * 1000) / 10,
          mibPerSecond: Math.round((rate / MiB) * 10) / 10,
          seconds: Math.round(seconds * 10) / 10,
          secondsLeft: rate > 0 ? Math.round(Number(this.total - done) / rate) : null,
        },
        'preallocating',
      );
    }
  }

  /** The range is allocated. */
  finish(method: PreallocationMethod): void {
    const seconds = (this.now() - this.started) / 1000;
    this.log.info(
      {
        ...this.fields,
        method,
        bytes: this.total.toString(),
        seconds: Math.round(seconds * 1000) / 1000,
        mibPerSecond: seconds > 0 ? Math.round((Number(this.total) / MiB / seconds) * 10) / 10 : null,
      },
      'preallocated',
    );
  }
}

/**
 * Allocate `length` bytes of `file` from `offset`: fallocate(2) where the filesystem supports it,
 * otherwise by writing zeros ("full"), with progress in the call's log and through `tc.onProgress`.
 * Stops, rejecting with the abort's reason, when `tc.signal` is aborted (between chunks of zeros).
 */
export async function preallocate(file: string, offset: bigint, length: bigint, tc: PreallocateContext): Promise<PreallocationMethod> {
  if (length <= 0n) return 'none';
  const { log } = tc;
  const progress = new ProgressReporter(length, log, { file }, Date.now, tc.cadence);
  tc.onProgress?.(0n, length);
  try {
    await run('fallocate', ['--offset', offset.toString(), '--length', length.toString(), file], { log: tc.execLog ?? log, signal: tc.signal });
    tc.onProgress?.(length, length);
    progress.finish('fallocate');
    return 'fallocate';
  } catch (err) {
    if (!(err instanceof ToolError) || !/not supported/i.test(err.result.stderr)) throw err;
  }
  log.info({ file, bytes: length.toString() }, 'fallocate not supported here: writing zeros');
  const zeros = Buffer.alloc(ZERO_CHUNK);
  const fh = await fsp.open(file, 'r+');
  try {
    let done = 0n;
    while (done < length) {
      throwIfCancelled(tc.signal);
      const n = length - done < BigInt(ZERO_CHUNK) ? Number(length - done) : ZERO_CHUNK;
      await fh.write(zeros, 0, n, Number(offset + done));
      done += BigInt(n);
      tc.onProgress?.(done, length);
      progress.update(done);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  progress.finish('full');
  return 'full';
}
