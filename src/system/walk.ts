import type { BigIntStats } from 'node:fs';
import { promises as fsp } from 'node:fs';
import path from 'node:path';

export interface DiskUsage {
  /** Allocated bytes (st_blocks × 512) of everything below and including the start, hard links once. */
  bytes: bigint;
  entries: number;
  /** Mount points met and not entered. */
  skippedMounts: string[];
  /** Entries that vanished or could not be read while walking. */
  errors: number;
}

/**
 * `du -sx --apparent-size=no` in-process: sums the allocated blocks of a tree without following
 * symlinks (lstat only) and without entering mount points (`mountPoints`, real paths from mountinfo).
 * Directories are read a few at a time so a large tree neither blocks nor floods the thread pool.
 */
export async function diskUsage(start: string, opts: { mountPoints: ReadonlySet<string>; concurrency?: number }): Promise<DiskUsage> {
  const out: DiskUsage = { bytes: 0n, entries: 0, skippedMounts: [], errors: 0 };
  const seen = new Set<string>();
  const count = (st: BigIntStats) => {
    if (st.nlink > 1n && !st.isDirectory()) {
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) return;
      seen.add(key);
    }
    out.bytes += st.blocks * 512n;
    out.entries++;
  };
  let top: BigIntStats;
  try {
    top = await fsp.lstat(start, { bigint: true });
  } catch {
    out.errors++;
    return out;
  }
  count(top);
  if (!top.isDirectory()) return out;

  const queue: string[] = [start];
  const workers = Math.max(1, opts.concurrency ?? 8);
  let active = 0;
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (active < workers && queue.length > 0) {
        const dir = queue.pop()!;
        active++;
        void readDir(dir).finally(() => {
          active--;
          if (queue.length === 0 && active === 0) resolve();
          else pump();
        });
      }
      if (queue.length === 0 && active === 0) resolve();
    };
    const readDir = async (dir: string) => {
      let names: string[];
      try {
        names = await fsp.readdir(dir);
      } catch {
        out.errors++;
        return;
      }
      for (let i = 0; i < names.length; i += 64) {
        await Promise.all(
          names.slice(i, i + 64).map(async (n) => {
            const p = path.join(dir, n);
            let st: BigIntStats;
            try {
              st = await fsp.lstat(p, { bigint: true });
            } catch {
              out.errors++;
              return;
            }
            if (st.isDirectory() && opts.mountPoints.has(p)) {
              out.skippedMounts.push(p);
              return;
            }
            count(st);
            if (st.isDirectory()) queue.push(p);
          }),
        );
      }
    };
    pump();
  });
  return out;
}

export interface RemoveResult {
  files: number;
  dirs: number;
}

export class RefusedError extends Error {}

/**
 * `rm -r` that never leaves the tree it was given: symlinks are removed, never followed (lstat,
 * unlink); a directory that is a mount point is refused before anything is removed, and checked again
 * on the way down. Directories are removed with rmdir(2), which also removes empty btrfs subvolumes.
 */
export async function removeTree(target: string, mountPoints: ReadonlySet<string>): Promise<RemoveResult> {
  const prefix = `${target}/`;
  for (const mp of mountPoints) {
    if (mp === target || mp.startsWith(prefix)) throw new RefusedError(`${mp} is a mount point inside ${target}`);
  }
  const res: RemoveResult = { files: 0, dirs: 0 };
  const walk = async (p: string): Promise<void> => {
    let st;
    try {
      st = await fsp.lstat(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    if (!st.isDirectory()) {
      await fsp.unlink(p).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      res.files++;
      return;
    }
    if (mountPoints.has(p)) throw new RefusedError(`${p} is a mount point`);
    for (const n of await fsp.readdir(p)) await walk(path.join(p, n));
    await fsp.rmdir(p).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    res.dirs++;
  };
  await walk(target);
  return res;
}
