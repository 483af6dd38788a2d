import path from 'node:path';
import { mountContaining, type MountEntry } from '../system/mount.js';

/** Where a directory is inside its filesystem: the device (major:minor) and the path from that filesystem's root. */
export interface FsLocation {
  device: string;
  /** Path of the directory inside its filesystem, e.g. "/var/hpvolumes" or "/" for a mount root. */
  fsPath: string;
  mount: MountEntry;
}

/** `realDir` must be a real path (mountinfo shows real paths). */
export function locateInFilesystem(mounts: MountEntry[], realDir: string): FsLocation | undefined {
  const m = mountContaining(mounts, realDir);
  if (!m) return undefined;
  const fsPath = path.posix.join(mountSource(m).fsPath, path.posix.relative(m.mountPoint, realDir));
  return { device: m.device, fsPath, mount: m };
}

/** A mount's source path inside its filesystem, and whether that source was deleted ("//deleted" in mountinfo). */
export function mountSource(m: MountEntry): { fsPath: string; deleted: boolean } {
  const deleted = m.root.endsWith('//deleted');
  return { fsPath: deleted ? m.root.slice(0, -'//deleted'.length) : m.root, deleted };
}

/** `p` relative to `dir` when strictly inside it, else undefined (plain string paths, no I/O). */
export function relativeInside(dir: string, p: string): string | undefined {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  if (!p.startsWith(prefix) || p.length === prefix.length) return undefined;
  return p.slice(prefix.length);
}
