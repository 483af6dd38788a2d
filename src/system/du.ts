import { promises as fsp } from 'node:fs';
import path from 'node:path';

/**
 * Bytes allocated on disk under `p` (like `du -s --block-size=1 -x`): blocks of every file and
 * directory, without following symlinks or crossing into other filesystems. Entries that vanish while
 * walking are skipped. Reflinked extents count once per file that references them.
 */
export async function allocatedBytes(p: string): Promise<bigint> {
  let root;
  try {
    root = await fsp.lstat(p, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0n;
    throw err;
  }
  let total = root.blocks * 512n;
  if (!root.isDirectory()) return total;
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await fsp.readdir(dir);
    } catch {
      return;
    }
    for (const e of entries) {
      const full = path.join(dir, e);
      const st = await fsp.lstat(full, { bigint: true }).catch(() => undefined);
      if (!st || st.dev !== root.dev) continue;
      total += st.blocks * 512n;
      if (st.isDirectory()) await walk(full);
    }
  };
  await walk(p);
  return total;
}
