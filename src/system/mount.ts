import { readFileSync } from 'node:fs';
import { internal, invalidInput } from '../errors.js';
import { quote, run, syscall } from './exec.js';
import { MS, mountBackend, type MountContext } from './native-mount.js';

export interface MountEntry {
  mountId: number;
  parentId: number;
  /** major:minor of the filesystem's device. */
  device: string;
  /** Path inside the filesystem that is mounted here (not "/" for bind mounts of a subdirectory). */
  root: string;
  mountPoint: string;
  options: string[];
  fsType: string;
  source: string;
  superOptions: string[];
  /** Peer group this mount shares mount events with (`shared:N`), if any. */
  shared?: number;
  /** Peer group this mount receives mount events from (`master:N`), if any. */
  master?: number;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const head = line.slice(0, sep).split(' ');
    const tail = line.slice(sep + 3).split(' ');
    if (head.length < 6 || tail.length < 3) continue;
    const propagation: { shared?: number; master?: number } = {};
    for (const field of head.slice(6)) {
      const m = /^(shared|master):(\d+)$/.exec(field);
      if (m) propagation[m[1] as 'shared' | 'master'] = Number(m[2]);
    }
    entries.push({
      mountId: Number(head[0]),
      parentId: Number(head[1]),
      device: head[2]!,
      root: unescapeMountinfo(head[3]!),
      mountPoint: unescapeMountinfo(head[4]!),
      options: head[5]!.split(','),
      fsType: tail[0]!,
      source: unescapeMountinfo(tail[1]!),
      superOptions: tail[2]!.split(','),
      ...propagation,
    });
  }
  return entries;
}

/**
 * The mount table as the kernel has it now. Read synchronously: procfs answers from memory, and one
 * read is cheaper than the four thread-pool round trips of an async readFile.
 */
export async function readMounts(): Promise<MountEntry[]> {
  return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}

/** Every mount point there is now: what the tree walks (removeTree, diskUsage) must not enter. */
export async function readMountPoints(): Promise<Set<string>> {
  return new Set((await readMounts()).map((m) => m.mountPoint));
}

/** The top-most mount at exactly `mountPoint`, if any. */
export function mountAt(mounts: MountEntry[], mountPoint: string): MountEntry | undefined {
  let found: MountEntry | undefined;
  for (const m of mounts) if (m.mountPoint === mountPoint) found = m;
  return found;
}

/**
 * The top-most mount at exactly `mountPoint` (a real path), if any. Asks statx first, which answers
 * "nothing is mounted here" without reading the whole mount table (hundreds of lines on a busy node).
 */
export async function mountedAt(mountPoint: string, mc: MountContext = {}): Promise<MountEntry | undefined> {
  const backend = mc.backend ?? mountBackend;
  if (backend.kind === 'syscall' && backend.addon.isMountRoot(mountPoint) === false) return undefined;
  return mountAt(await readMounts(), mountPoint);
}

/** The mount whose mount point is the longest prefix of `p` (the filesystem `p` lives on). */
export function mountContaining(mounts: MountEntry[], p: string): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const mp = m.mountPoint;
    const inside = p === mp || mp === '/' || p.startsWith(mp.endsWith('/') ? mp : `${mp}/`);
    if (inside && (!best || mp.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

/** Mount points strictly below `dir`. */
export function mountsBelow(mounts: MountEntry[], dir: string): MountEntry[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return mounts.filter((m) => m.mountPoint.startsWith(prefix));
}

/** Per-mount flags a remount of a bind mount may set or clear, as mount(8) names them. */
const FLAG_BITS: Record<string, { set?: number; clear?: number; atime?: number }> = {
  nosuid: { set: MS.NOSUID },
  suid: { clear: MS.NOSUID },
  nodev: { set: MS.NODEV },
  dev: { clear: MS.NODEV },
  noexec: { set: MS.NOEXEC },
  exec: { clear: MS.NOEXEC },
  nodiratime: { set: MS.NODIRATIME },
  diratime: { clear: MS.NODIRATIME },
  nosymfollow: { set: MS.NOSYMFOLLOW },
  symfollow: { clear: MS.NOSYMFOLLOW },
  noatime: { atime: MS.NOATIME },
  // "atime" only says "not noatime"; the kernel's default for that is relatime.
  atime: { atime: MS.RELATIME },
  relatime: { atime: MS.RELATIME },
  strictatime: { atime: MS.STRICTATIME },
};

/**
 * The flags for remounting a bind mount whose per-mount options (mountinfo) are `current`: a bind
 * remount replaces all of them, so what is already there (a nosuid or nodev inherited from the pool's
 * filesystem) is kept unless `flags` turn it off, as mount(8) does.
 */
export function bindRemountFlags(current: string[], readOnly: boolean, flags: string[]): number {
  let bits = 0;
  let atime: number = MS.STRICTATIME;
  for (const o of current) {
    const f = FLAG_BITS[o];
    if (f?.set) bits |= f.set;
    if (f?.atime) atime = f.atime;
  }
  for (const o of flags) {
    const f = FLAG_BITS[o];
    if (!f) throw invalidInput(`mount flag ${JSON.stringify(o)} cannot be applied to a bind mount`);
    if (f.set) bits |= f.set;
    if (f.clear) bits &= ~f.clear;
    if (f.atime) atime = f.atime;
  }
  return MS.REMOUNT | MS.BIND | bits | atime | (readOnly ? MS.RDONLY : 0);
}

/** Bind-mount `source` (a directory or a device node) onto `target`, read-only and with `flags` if asked. */
export async function bindMount(source: string, target: string, opts: { readOnly: boolean; flags?: string[] }, mc: MountContext = {}): Promise<void> {
  const extra = opts.flags ?? [];
  const backend = mc.backend ?? mountBackend;
  const tc = { log: mc.log, signal: mc.signal };
  if (backend.kind === 'tools') await run('mount', ['--bind', source, target], tc);
  else await syscall(`mount --bind ${quote(source)} ${quote(target)}`, () => backend.addon.mount(source, target, null, MS.BIND, null), tc);
  if (!opts.readOnly && extra.length === 0) return;
  // A bind mount takes per-mount flags only on a remount.
  const o = ['remount', 'bind', ...(opts.readOnly ? ['ro'] : []), ...extra].join(',');
  try {
    if (backend.kind === 'tools') {
      await run('mount', ['-o', o, target], tc);
    } else {
      const made = mountAt(await readMounts(), target);
      if (!made) throw internal(`bind mount of ${source} on ${target} is not in /proc/self/mountinfo`);
      const bits = bindRemountFlags(made.options, opts.readOnly, extra);
      await syscall(`mount -o ${o} ${quote(target)}`, () => backend.addon.mount(null, target, null, bits, null), tc);
    }
  } catch (err) {
    // Undone whatever the caller's state: a half-made mount must not stay.
    await unmount(target, { ...mc, signal: undefined }).catch(() => {});
    throw err;
  }
}

/** Unmount the top-most mount at `target`. */
export async function unmount(target: string, mc: MountContext = {}): Promise<void> {
  const backend = mc.backend ?? mountBackend;
  const tc = { log: mc.log, signal: mc.signal };
  if (backend.kind === 'tools') {
    await run('umount', [target], tc);
    return;
  }
  const { addon } = backend;
  await syscall(`umount ${quote(target)}`, () => addon.umount2(target, 0), tc);
}
