import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { syncDir } from './dir-sync.js';

// Metadata calls on a pool (open, write of a few hundred bytes, rename, close) take microseconds and
// are made synchronously while a write is alone: each async call costs a thread-pool round trip, about
// 50 µs on a small VM, which is more than the call itself. While other writes are under way their
// fsyncs are committing the filesystem's journal, and an open or rename made then can wait for that
// commit: on the main thread it would hold up every other call, so they go to the thread pool instead.
// fsync waits for the disk and always goes to the thread pool.
const fsyncAsync = promisify(fs.fsync);

interface FileOps {
  open(p: string, flags: string, mode: number): number | Promise<number>;
  write(fd: number, data: string | Buffer): void | Promise<void>;
  close(fd: number): void | Promise<void>;
  rename(from: string, to: string): void | Promise<void>;
}

const syncOps: FileOps = {
  open: (p, flags, mode) => fs.openSync(p, flags, mode),
  write: (fd, data) => fs.writeFileSync(fd, data),
  close: (fd) => fs.closeSync(fd),
  rename: (from, to) => fs.renameSync(from, to),
};

const openAsync = promisify(fs.open);
const closeAsync = promisify(fs.close);
const renameAsync = promisify(fs.rename);
const writeFileAsync = promisify(fs.writeFile);
const asyncOps: FileOps = {
  open: (p, flags, mode) => openAsync(p, flags, mode),
  write: (fd, data) => writeFileAsync(fd, data),
  close: (fd) => closeAsync(fd),
  rename: (from, to) => renameAsync(from, to),
};

/** writeFileAtomic calls under way. */
let writing = 0;

/** fsync a directory so that a rename or unlink inside it is durable (group-committed: dir-sync.ts). */
export function fsyncDir(dir: string): Promise<void> {
  return syncDir(dir);
}

/**
 * Replace `file` with `data` so that a crash at any point leaves either the old or the new content:
 * write a temporary sibling, fsync it, rename it over the target, fsync the directory.
 */
export async function writeFileAtomic(file: string, data: string | Buffer, opts: { mode?: number } = {}): Promise<void> {
  writing++;
  try {
    await writeThrough(writing > 1 ? asyncOps : syncOps, file, data, opts.mode ?? 0o600);
  } finally {
    writing--;
  }
}

async function writeThrough(ops: FileOps, file: string, data: string | Buffer, mode: number): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fd = await ops.open(tmp, 'wx', mode);
  try {
    await ops.write(fd, data);
    await fsyncAsync(fd);
  } catch (err) {
    await ops.close(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  await ops.close(fd);
  try {
    await ops.rename(tmp, file);
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
