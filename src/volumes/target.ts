import { lstatSync, readdirSync, readlinkSync, realpathSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { invalidInput, precondition } from '../errors.js';
import type { Pool } from '../pools/pool.js';
import type { ToolContext } from '../system/exec.js';
import type { Host } from '../system/host.js';
import type { MountEntry } from '../system/mount.js';
import { blockTargetState } from './block.js';
import { sameInode } from './filesystem.js';
import type { VolumeMode } from '../format/records.js';

/** A publication target: the path as kubelet gives it (the key of a volume's publications) and where it really leads (what mountinfo shows). */
export interface Target {
  given: string;
  real: string;
}

/** What a target is checked against: the volume's mode and the absolute path of its data. */
export interface VolumeData {
  mode: VolumeMode;
  data: string;
}

/**
 * What is at a target path, for one volume: nothing mounted; this volume (a bind of its directory,
 * or of a loop device that backs its image and is not detaching); a bind of a loop device that no
 * longer backs its image or is detaching ('stale': a publication of ours whose device was taken from
 * it, to be made again); or something else ('foreign'), which is never touched.
 */
export type AtTarget =
  | { kind: 'nothing' }
  | { kind: 'ours'; mount: MountEntry }
  | { kind: 'stale'; mount: MountEntry; why: string }
  | { kind: 'foreign'; mount: MountEntry };

/** The one answer to "what is at this target" (a real path), used by publish, unpublish, stats, expansion and the restart. */
export async function whatIsAt(host: Host, vol: VolumeData, real: string): Promise<AtTarget> {
  const mount = await host.mounts.mountedAt(real);
  if (!mount) return { kind: 'nothing' };
  return classifyMount(mount, await leadsTo(host, vol, real));
}

/** Where a path leads, for one volume: to it, to a loop device taken from it, or elsewhere. */
export type Leads = { to: 'volume' } | { to: 'stale-device'; why: string } | { to: 'elsewhere' };

export async function leadsTo(host: Host, vol: VolumeData, p: string): Promise<Leads> {
  if (vol.mode === 'block') {
    const b = await blockTargetState(host, p, vol.data);
    return b.kind === 'ours' ? { to: 'volume' } : b.kind === 'stale' ? { to: 'stale-device', why: b.why } : { to: 'elsewhere' };
  }
  return (await sameInode(host, p, vol.data)) ? { to: 'volume' } : { to: 'elsewhere' };
}

/** A mount at a target, told by where the target leads. */
export function classifyMount(mount: MountEntry, leads: Leads): AtTarget {
  if (leads.to === 'volume') return { kind: 'ours', mount };
  if (leads.to === 'stale-device') return { kind: 'stale', mount, why: leads.why };
  return { kind: 'foreign', mount };
}

/** Takes every layer off a stale target (see AtTarget), so that the publication can be made again. */
export async function unbindStale(host: Host, real: string, tc?: ToolContext): Promise<void> {
  while (await host.mounts.mountedAt(real)) await host.mounts.unmount(real, tc);
}

/**
 * Validates a target path and finds where it really leads. mount(8) follows symlinks, so the checks
 * run on the real path: a target that is itself a symlink, or whose real location overlaps a pool, is
 * refused.
 */
export function resolveTarget(p: unknown, field: string, pools: ReadonlyArray<Pick<Pool, 'name' | 'root'>>): Target {
  checkPathText(p, field);
  const given = path.normalize(p).replace(/(.)\/+$/, '$1');
  if (p.includes('\0') || !path.isAbsolute(p) || given !== p.replace(/(.)\/+$/, '$1') || given === '/') {
    throw invalidInput(`${field} ${JSON.stringify(p)} must be a normalised absolute path`);
  }
  const real = realLocation(given);
  if (real === '/') throw invalidInput(`${field} ${given} resolves to /`);
  if (lstatSync(given, { throwIfNoEntry: false })?.isSymbolicLink()) {
    throw invalidInput(`${field} ${given} is a symbolic link`);
  }
  for (const pool of pools) {
    for (const root of new Set([pool.root, realLocation(pool.root)])) {
      for (const t of new Set([given, real])) {
        if (t === root || t.startsWith(`${root}/`) || root.startsWith(`${t}/`)) {
          throw invalidInput(`${field} ${given}${t !== given ? ` (really ${t})` : ''} overlaps storage pool ${pool.name}`);
        }
      }
    }
  }
  return { given, real };
}

/**
 * The real path of `p`: the symlinks of its nearest existing ancestor resolved, the rest appended.
 * A dangling symlink on the way is followed too (mkdir -p and mount would go where it points).
 */
export function realLocation(p: string): string {
  const rest: string[] = [];
  let existing = p;
  for (let hops = 0; ; ) {
    try {
      return path.join(realpathSync.native(existing), ...rest.reverse());
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENAMETOOLONG' || code === 'ELOOP') throw invalidInput(`path ${p.slice(0, 200)} cannot be resolved: ${code}`);
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
      if (existing === '/') return p;
      if (lstatSync(existing, { throwIfNoEntry: false })?.isSymbolicLink()) {
        if (++hops > 40) throw invalidInput(`path ${p.slice(0, 200)} cannot be resolved: ELOOP`);
        existing = path.resolve(path.dirname(existing), readlinkSync(existing));
        continue;
      }
      rest.push(path.basename(existing));
      existing = path.dirname(existing);
    }
  }
}

/**
 * A path a caller names a volume by (NodeGetVolumeStats, NodeExpandVolume): a string the kernel can
 * take. Unlike a publication target it may be the volume's own data path, and a relative one is not
 * refused: no volume is there, which the CSI spec (and csi-sanity) answers with NOT_FOUND.
 */
export function checkGivenPath(p: unknown, field: string): string {
  checkPathText(p, field);
  if (p.includes('\0')) throw invalidInput(`${field} ${JSON.stringify(p)} contains a NUL byte`);
  return p;
}

/** A path field given at all, and within the kernel's limits (PATH_MAX, NAME_MAX per component). */
function checkPathText(p: unknown, field: string): asserts p is string {
  if (typeof p !== 'string' || p === '') throw invalidInput(`${field} is required`);
  if (p.length > 4095 || p.split('/').some((c) => Buffer.byteLength(c) > 255)) {
    throw invalidInput(`${field} is longer than a path may be (${p.length} characters)`);
  }
}

/** Where a path given by a caller (stats, expansion) really leads; the path itself when that cannot be told. */
export function realLocationOrSelf(p: string): string {
  if (!path.isAbsolute(p)) return p;
  try {
    return realLocation(p);
  } catch {
    return p;
  }
}

/**
 * Where a recorded publication's target is now, after a restart: its directory resolved (kubelet's
 * may sit behind a symlink), and whether that directory is still there (the pod is not gone).
 */
export async function recordedTarget(given: string): Promise<{ real: string; dirThere: boolean }> {
  const realDir = await fsp.realpath(path.dirname(given)).catch(() => undefined);
  if (realDir === undefined) return { real: given, dirThere: false };
  const dirThere = await fsp.stat(realDir).then((s) => s.isDirectory(), () => false);
  return { real: path.join(realDir, path.basename(given)), dirThere };
}

/**
 * A target a publish may mount onto: missing, or what a publish would create itself (an empty
 * directory for a filesystem volume, an empty file for a block volume). Mounting over anything else
 * would hide it, and the unpublish could not tell it from ours.
 */
export function checkTargetFree(real: string, mode: VolumeMode): void {
  const st = lstatSync(real, { throwIfNoEntry: false });
  if (!st) return;
  if (mode === 'block') {
    if (!st.isFile() || st.size !== 0) throw precondition(`target ${real} exists and is not an empty file`);
    return;
  }
  if (!st.isDirectory()) throw precondition(`target ${real} exists and is not a directory`);
  if (readdirSync(real).length > 0) throw precondition(`target ${real} is a directory that is not empty`);
}
