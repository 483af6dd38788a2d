import { promises as fsp } from 'node:fs';
import type { Logger } from '../observe/logger.js';
import { ToolError } from '../errors.js';
import { throwIfCancelled } from '../observe/call-context.js';
import { run, type ToolContext } from './exec.js';

export type PreallocationMethod = 'none' | 'fallocate' | 'full';

const ZERO_CHUNK = 8 * 1024 * 1024;
const PROGRESS_EVERY = 1024n * 1024n * 1024n;

/**
 * Allocate `length` bytes of `file` from `offset`: fallocate(2) where the filesystem supports it,
 * otherwise by writing zeros ("full"), with progress in the logs for big ranges. Stops, rejecting
 * with the abort's reason, when `tc.signal` is aborted (between chunks of zeros).
 */
export async function preallocate(
  file: string,
  offset: bigint,
  length: bigint,
  tc: ToolContext & { log: Logger; /** Where the fallocate run is logged, if not `log`. */ execLog?: Logger },
): Promise<PreallocationMethod> {
  if (length <= 0n) return 'none';
  const { log } = tc;
  try {
    await run('fallocate', ['--offset', offset.toString(), '--length', length.toString(), file], { log: tc.execLog ?? log, signal: tc.signal });
    return 'fallocate';
  } catch (err) {
    if (!(err instanceof ToolError) || !/not supported/i.test(err.result.stderr)) throw err;
  }
  log.info({ file, bytes: length.toString() }, 'fallocate not supported here: writing zeros');
  const zeros = Buffer.alloc(ZERO_CHUNK);
  const fh = await fsp.open(file, 'r+');
  const started = Date.now();
  try {
    let done = 0n;
    let nextReport = PROGRESS_EVERY;
    while (done < length) {
      throwIfCancelled(tc.signal);
      const n = length - done < BigInt(ZERO_CHUNK) ? Number(length - done) : ZERO_CHUNK;
      await fh.write(zeros, 0, n, Number(offset + done));
      done += BigInt(n);
      if (done >= nextReport) {
        log.info({ file, done: done.toString(), total: length.toString(), seconds: (Date.now() - started) / 1000 }, 'preallocating');
        nextReport += PROGRESS_EVERY;
      }
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return 'full';
}
