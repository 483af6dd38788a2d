import { promises as fsp } from 'node:fs';
import { run } from './exec.js';

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
    });
  }
  return entries;
}

export async function readMounts(): Promise<MountEntry[]> {
  return parseMountinfo(await fsp.readFile('/proc/self/mountinfo', 'utf8'));
}

/** The top-most mount at exactly `mountPoint`, if any. */
export function mountAt(mounts: MountEntry[], mountPoint: string): MountEntry | undefined {
  let found: MountEntry | undefined;
  for (const m of mounts) if (m.mountPoint === mountPoint) found = m;
  return found;
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

export async function bindMount(source: string, target: string, opts: { readOnly: boolean; flags?: string[] }): Promise<void> {
  await run('mount', ['--bind', source, target]);
  const extra = opts.flags ?? [];
  if (opts.readOnly || extra.length > 0) {
    // A bind mount takes per-mount flags only on a remount.
    const o = ['remount', 'bind', ...(opts.readOnly ? ['ro'] : []), ...extra].join(',');
    try {
      await run('mount', ['-o', o, target]);
    } catch (err) {
      await run('umount', [target]).catch(() => {});
      throw err;
    }
  }
}

export async function unmount(target: string): Promise<void> {
  await run('umount', [target]);
}
