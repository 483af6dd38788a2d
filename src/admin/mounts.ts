import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { mountContaining, parseMountinfo, type MountEntry } from '../system/mount.js';

/** A mountinfo line with its propagation tags, which parseMountinfo leaves out. */
export interface MountInfo extends MountEntry {
  /** Peer group this mount shares mount events with (`shared:N`). */
  shared?: number;
  /** Peer group this mount receives events from (`master:N`). */
  master?: number;
}

export function parseMountinfoFull(text: string): MountInfo[] {
  const tags = new Map<number, { shared?: number; master?: number }>();
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const head = line.slice(0, sep).split(' ');
    const t: { shared?: number; master?: number } = {};
    for (const f of head.slice(6)) {
      const m = /^(shared|master):(\d+)$/.exec(f);
      if (m) t[m[1] as 'shared' | 'master'] = Number(m[2]);
    }
    tags.set(Number(head[0]), t);
  }
  return parseMountinfo(text).map((e) => ({ ...e, ...tags.get(e.mountId) }));
}

export async function readMountsFull(): Promise<MountInfo[]> {
  return parseMountinfoFull(await fsp.readFile('/proc/self/mountinfo', 'utf8'));
}

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
  const fsPath = path.posix.join(m.root.replace(/\/\/deleted$/, ''), path.posix.relative(m.mountPoint, realDir));
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
