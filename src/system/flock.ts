import { createRequire } from 'node:module';
import { promises as fsp } from 'node:fs';

const require = createRequire(import.meta.url);
const fsExt = require('fs-ext') as { flock(fd: number, flags: string, cb: (err: NodeJS.ErrnoException | null) => void): void };

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
    const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => fsExt.flock(fh.fd, 'exnb', resolve));
    if (err) {
      await fh.close();
      if (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK') return false;
      throw err;
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
