import { lstatSync, promises as fsp } from 'node:fs';
import path from 'node:path';

/** Whether anything (a dangling symlink too) is at `p`. */
export function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** Extend a file to `size` bytes (sparse), never shrinking it, and flush it; returns the size it had. */
export async function growFile(file: string, size: bigint): Promise<bigint> {
  const fh = await fsp.open(file, 'r+');
  try {
    const before = (await fh.stat({ bigint: true })).size;
    if (before < size) await fh.truncate(Number(size));
    await fh.sync();
    return before;
  } finally {
    await fh.close();
  }
}

/** fsync every file and directory of a freshly copied tree (or a single file). */
export async function fsyncTree(p: string): Promise<void> {
  const st = await fsp.lstat(p);
  if (st.isSymbolicLink()) return;
  if (st.isDirectory()) {
    for (const e of await fsp.readdir(p)) await fsyncTree(path.join(p, e));
  }
  if (st.isDirectory() || st.isFile()) {
    const fh = await fsp.open(p, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}
