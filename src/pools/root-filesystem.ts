import path from 'node:path';
import type { MountEntry } from '../system/mount.js';

/**
 * Is the directory `dir` (a real path: no symlinks) on the filesystem mounted at the host's `/`?
 *
 * Read from the mount table (/proc/self/mountinfo) rather than by comparing st_dev with `/`: in the
 * DaemonSet `/` is the container's own root (an overlay), not the node's. Each mountinfo entry tells
 * which path of its filesystem is mounted where (`root`, `mountPoint`), so the path of `dir` inside
 * its filesystem is `root` + (`dir` below `mountPoint`) of the top-most mount holding it. A directory
 * of the filesystem mounted at `/` is at the same path inside that filesystem as on the host: seen on
 * the host, through the mount of `/`; seen in the container, through the hostPath bind of the pool
 * directory, whose `root` is that directory's host path. So the answer is "the path inside its
 * filesystem is the pool's own path". That holds where the pool is mounted into the container at its
 * host path, as deploy/ does (test/manifests checks it). A disk mounted at the pool path gives `/`, a
 * disk mounted at /var gives /hpvolumes for /var/hpvolumes: not the root filesystem.
 *
 * undefined when no mount holds `dir` (a table that cannot be read).
 */
export function onRootFilesystem(dir: string, mounts: readonly MountEntry[]): boolean | undefined {
  const target = path.posix.resolve(dir);
  let holder: MountEntry | undefined;
  for (const m of mounts) {
    const rel = path.posix.relative(m.mountPoint, target);
    if (rel.startsWith('..') || path.posix.isAbsolute(rel)) continue;
    // The longest mount point wins; at the same point the later entry is the top-most mount.
    if (!holder || m.mountPoint.length >= holder.mountPoint.length) holder = m;
  }
  if (!holder) return undefined;
  const inFs = path.posix.join(holder.root, path.posix.relative(holder.mountPoint, target));
  return inFs === target;
}
