import { promises as fsp } from 'node:fs';
import { internal } from '../csi/errors.js';
import { bindMount, mountAt, readMounts, unmount } from '../system/mount.js';

/** Bind-mount the volume directory onto a target directory, created if missing. */
export async function publishDirectory(source: string, target: string, opts: { readOnly: boolean; flags: string[] }): Promise<void> {
  try {
    await fsp.access(source);
  } catch {
    throw internal(`volume data is missing at ${source}`);
  }
  await fsp.mkdir(target, { recursive: true, mode: 0o750 });
  await bindMount(source, target, { readOnly: opts.readOnly, flags: opts.flags });
}

/**
 * Unmount every layer at `target`, then remove the target itself: a directory (filesystem volume) or
 * the file a device was bound onto (block volume). Never removes anything recursively.
 */
export async function unmountAndRemoveTarget(target: string, isOurs: () => Promise<boolean>): Promise<boolean> {
  let ours = true;
  for (;;) {
    const mounted = mountAt(await readMounts(), target);
    if (!mounted) break;
    if (!(await isOurs())) {
      ours = false;
      break;
    }
    await unmount(target);
  }
  if (!ours) return false;
  try {
    const st = await fsp.lstat(target);
    if (st.isDirectory()) await fsp.rmdir(target);
    else await fsp.unlink(target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw internal(`cannot remove target ${target} after unmount: ${code}`, err);
  }
  return true;
}

export async function sameInode(a: string, b: string): Promise<boolean> {
  try {
    const [sa, sb] = await Promise.all([fsp.stat(a, { bigint: true }), fsp.stat(b, { bigint: true })]);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}
