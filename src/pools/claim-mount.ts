import path from 'node:path';
import { mountAt, type MountEntry } from '../system/mount.js';
import { onRootFilesystem } from './root-filesystem.js';

/**
 * Why a Filesystem-claim pool at `dir` (a real path) cannot be served yet, or undefined when it can:
 * its holder must have mounted the claim's filesystem at `dir`. A bare directory is refused even in
 * the DaemonSet, where the hostPath bind of the pool directory is itself a mount at `dir`: that bind
 * is of the root filesystem's own directory, which root-filesystem.ts tells apart from a claim.
 */
export function claimNotMounted(pool: string, dir: string, mounts: readonly MountEntry[]): string | undefined {
  const target = path.posix.resolve(dir);
  if (!mountAt([...mounts], target)) return `pool ${pool}: waiting for its claim's filesystem to be mounted at ${target} (nothing is mounted there)`;
  if (onRootFilesystem(target, mounts) !== false) {
    return `pool ${pool}: waiting for its claim's filesystem to be mounted at ${target} (what is there is a directory of the node's root filesystem)`;
  }
  return undefined;
}
