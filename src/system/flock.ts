import { createRequire } from 'node:module';
import { promises as fsp } from 'node:fs';
import { run } from './exec.js';

type FsExt = { flock(fd: number, flags: string, cb: (err: NodeJS.ErrnoException | null) => void): void };

/**
 * fs-ext (a native addon) when it is installed: it is an optional dependency, built by npm ci where a
 * compiler is. Without it the lock is taken by flock(1) on our descriptor (flockWithTool).
 */
function loadFsExt(): FsExt | undefined {
  try {
    return createRequire(import.meta.url)('fs-ext') as FsExt;
  } catch {
    return undefined;
  }
}

const fsExt = loadFsExt();

/** How ProcessLock takes its lock here: "flock(2)" (fs-ext) or "flock(1)" (fs-ext is not installed). */
export const FLOCK_BACKEND = fsExt ? 'flock(2)' : 'flock(1)';

/** flock(1)'s exit status for "another process holds it" (its --conflict-exit-code). */
const CONFLICT = 11;

/**
 * An exclusive, non-blocking flock(2) on `fd` made by flock(1), which gets the descriptor as its fd 3:
 * a flock belongs to the open file description, which the child shares, so the lock stays ours (held
 * while we keep `fd` open) after flock(1) has exited. False when another description holds it.
 */
export async function flockWithTool(fd: number): Promise<boolean> {
  const res = await run('flock', ['--exclusive', '--nonblock', '--conflict-exit-code', String(CONFLICT), '3'], { passFds: [fd], okCodes: [0, CONFLICT] });
  return res.code === 0;
}

async function flockExclusive(fd: number): Promise<boolean> {
  if (!fsExt) return flockWithTool(fd);
  const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => fsExt.flock(fd, 'exnb', resolve));
  if (!err) return true;
  if (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK') return false;
  throw err;
}

/**
 * An exclusive, non-blocking flock(2) held for the life of the process. Two daemons writing the same
 * pool would corrupt it; the kernel drops the lock when the holder dies, even by kill -9.
 */
export class ProcessLock {
  private handle?: fsp.FileHandle;

  constructor(readonly file: string) {}

  get held(): boolean {
    return this.handle !== undefined;
  }

  /** Takes the lock; false when another process holds it. `stamp` writes our pid into the file. */
  async acquire(stamp = true): Promise<boolean> {
    if (this.handle) return true;
    const fh = await fsp.open(this.file, stamp ? 'a+' : 'r', 0o600);
    let locked: boolean;
    try {
      locked = await flockExclusive(fh.fd);
    } catch (err) {
      await fh.close();
      throw err;
    }
    if (!locked) {
      await fh.close();
      return false;
    }
    if (stamp) {
      await fh.truncate(0);
      await fh.write(`${process.pid}\n`, 0);
    }
    this.handle = fh;
    return true;
  }

  async holder(): Promise<string> {
    return (await fsp.readFile(this.file, 'utf8').catch(() => '')).trim() || 'unknown';
  }

  async release(): Promise<void> {
    const fh = this.handle;
    this.handle = undefined;
    await fh?.close();
  }
}
