import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { syncDir } from './dir-sync.js';

// Metadata calls on a pool (open, write of a few hundred bytes, rename, close) take microseconds and
// are made synchronously: each async call costs a thread-pool round trip, about 50 µs on a small VM,
// which is more than the call itself. fsync waits for the disk and stays on the thread pool.
const fsyncAsync = promisify(fs.fsync);

/** fsync a directory so that a rename or unlink inside it is durable (group-committed: dir-sync.ts). */
export function fsyncDir(dir: string): Promise<void> {
  return syncDir(dir);
}

/**
 * Replace `file` with `data` so that a crash at any point leaves either the old or the new content:
 * write a temporary sibling, fsync it, rename it over the target, fsync the directory.
 */
export async function writeFileAtomic(file: string, data: string | Buffer, opts: { mode?: number } = {}): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fd = fs.openSync(tmp, 'wx', opts.mode ?? 0o600);
  try {
    fs.writeFileSync(fd, data);
    await fsyncAsync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

/** Temporary files left by writeFileAtomic when the process died between open and rename. */
export function isAtomicTempName(name: string): boolean {
  return /^\..+\.tmp-\d+-[0-9a-f]{8}$/.test(name);
}
