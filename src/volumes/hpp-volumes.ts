import { promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import { HPP_CSI_DIR, HPP_SNAPSHOT_DATA, HPP_SNAPSHOTS_DIR, META_DIR } from '../format/layout.js';
import type { SnapshotRecord, VolumeRecord } from '../format/records.js';
import { isValidName } from './ids.js';

/*
 * The volumes and snapshots KubeVirt's hostpath-provisioner (HPP) left in a pool, found where HPP put
 * them (format/layout.ts) and described as records of origin 'hpp', so that they are served under
 * their existing ids. Everything here only reads: the daemon writes such a record the first time it
 * changes something about the volume (VolumeManager), hppctl uses the same scan to keep HPP data out of
 * its orphans. What HPP never kept is not made up: the capacity is 0 (unknown), the parameters empty.
 * See docs/hpp-volumes.md.
 */

/** Where a pool's HPP volumes are, relative to its root ('.': the root itself), or why there are none. */
export interface HppDir {
  dir?: string;
  /** Why a declared directory is not served (missing, a symlink, a volume of ours). */
  note?: string;
}

/** The entries of an HPP directory that were not taken for volumes, and why. */
export interface HppSkipped {
  path: string;
  why: string;
}

export interface HppScan {
  volumes: VolumeRecord[];
  snapshots: SnapshotRecord[];
  skipped: HppSkipped[];
}

/** Where the records say a pool and node are. */
export interface HppOwner {
  pool: string;
  node: string;
}

async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await fsp.lstat(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/**
 * The pool's HPP directory for its `hppVolumes` setting: 'auto' (or unset) takes `csi` when it is a real
 * directory; 'none' takes none; anything else is the directory declared. `ours` holds the top-level
 * names the driver's own records use: a volume of ours named `csi` is not HPP's directory.
 */
export async function hppDirOf(root: string, setting: string | undefined, ours: ReadonlySet<string>): Promise<HppDir> {
  if (setting === 'none') return {};
  const auto = setting === undefined || setting === 'auto';
  const rel = auto ? HPP_CSI_DIR : setting;
  if (rel === '.') return { dir: '.' };
  const top = rel.split('/')[0]!;
  const st = await lstatOrUndefined(path.join(root, rel));
  if (ours.has(top)) return auto ? {} : { note: `${path.join(root, rel)} holds a volume of this driver, not hostpath-provisioner's` };
  if (!st) return auto ? {} : { note: `${path.join(root, rel)} does not exist` };
  if (!st.isDirectory()) return { note: `${path.join(root, rel)} is ${st.isSymbolicLink() ? 'a symbolic link (never followed)' : 'not a directory'}` };
  return { dir: rel };
}

function createdAt(st: Stats): string {
  return new Date(st.birthtimeMs > 0 ? st.birthtimeMs : st.ctimeMs).toISOString();
}

/** The record an HPP volume directory is served with until it has one of its own. */
export function hppVolumeRecord(dir: string, name: string, st: Stats, owner: HppOwner): VolumeRecord {
  return {
    version: 1,
    id: name,
    name,
    pool: owner.pool,
    node: owner.node,
    mode: 'filesystem',
    data: path.posix.join(dir, name),
    capacityBytes: '0',
    parameters: {},
    origin: 'hpp',
    createdAt: createdAt(st),
    state: 'ready',
    publications: {},
  };
}

/** Names in the HPP directory that are never volumes: the snapshot area, and in the pool root itself our own places. */
function reserved(dir: string, name: string, rootIsMount: boolean): boolean {
  if (name === HPP_SNAPSHOTS_DIR) return true;
  return dir === '.' && (name === META_DIR || (name === 'lost+found' && rootIsMount));
}

/** An HPP volume's name must be one a record can have (a PV name always is). */
function nameProblem(name: string): string | undefined {
  if (name.startsWith('.')) return 'a hidden entry';
  return isValidName(name) ? undefined : 'not a name a volume id can have (1-128 of A-Z a-z 0-9 . _ -)';
}

/**
 * Every HPP volume and snapshot in `dir` (relative to `root`). `taken`: names of the pool's own volume
 * and snapshot records (and their top-level directories); an HPP entry of such a name is skipped,
 * never served under the other's id.
 */
export async function scanHpp(root: string, dir: string, owner: HppOwner, taken: ReadonlySet<string>, opts: { rootIsMount?: boolean } = {}): Promise<HppScan> {
  const out: HppScan = { volumes: [], snapshots: [], skipped: [] };
  const abs = path.join(root, dir);
  for (const name of (await fsp.readdir(abs)).sort()) {
    if (reserved(dir, name, opts.rootIsMount ?? false)) continue;
    const p = path.join(abs, name);
    const st = await lstatOrUndefined(p);
    if (!st?.isDirectory()) continue;
    if (taken.has(name)) {
      if (dir !== '.') out.skipped.push({ path: p, why: `a volume or snapshot of this driver is named ${name}` });
      continue;
    }
    const bad = nameProblem(name);
    if (bad) {
      out.skipped.push({ path: p, why: bad });
      continue;
    }
    out.volumes.push(hppVolumeRecord(dir, name, st, owner));
  }
  const snapsAbs = path.join(abs, HPP_SNAPSHOTS_DIR);
  if ((await lstatOrUndefined(snapsAbs))?.isDirectory()) {
    for (const id of (await fsp.readdir(snapsAbs)).sort()) {
      const found = await readHppSnapshot(root, dir, id, owner);
      if (!('snapshot' in found)) {
        if (found.skipped) out.skipped.push(found.skipped);
      } else if (taken.has(id)) out.skipped.push({ path: path.join(snapsAbs, id), why: `a volume or snapshot of this driver is named ${id}` });
      else out.snapshots.push(found.snapshot);
    }
  }
  return out;
}

/** One HPP volume by its id, when its directory is there (the daemon looks again for an id it does not know). */
export async function findHppVolume(root: string, dir: string, id: string, owner: HppOwner): Promise<VolumeRecord | undefined> {
  if (nameProblem(id) || reserved(dir, id, false)) return undefined;
  const st = await lstatOrUndefined(path.join(root, dir, id));
  return st?.isDirectory() ? hppVolumeRecord(dir, id, st, owner) : undefined;
}

/** One HPP snapshot by its id, when it is there and whole. */
export async function findHppSnapshot(root: string, dir: string, id: string, owner: HppOwner): Promise<SnapshotRecord | undefined> {
  const found = await readHppSnapshot(root, dir, id, owner);
  return 'snapshot' in found ? found.snapshot : undefined;
}

/**
 * `<dir>/snapshots/<id>/`: `data/` holds the copy, the one other directory is named after the source
 * volume (HPP's reflink.go). Anything else is not a snapshot HPP could serve either.
 */
async function readHppSnapshot(root: string, dir: string, id: string, owner: HppOwner): Promise<{ snapshot: SnapshotRecord } | { skipped?: HppSkipped }> {
  const snapDir = path.join(root, dir, HPP_SNAPSHOTS_DIR, id);
  if (nameProblem(id)) return { skipped: { path: snapDir, why: nameProblem(id)! } };
  const st = await lstatOrUndefined(snapDir);
  if (!st?.isDirectory()) return {};
  const dataSt = await lstatOrUndefined(path.join(snapDir, HPP_SNAPSHOT_DATA));
  if (!dataSt?.isDirectory()) return { skipped: { path: snapDir, why: `no ${HPP_SNAPSHOT_DATA}/ directory: not a whole hostpath-provisioner snapshot` } };
  const sources: string[] = [];
  for (const n of await fsp.readdir(snapDir)) {
    if (n !== HPP_SNAPSHOT_DATA && (await lstatOrUndefined(path.join(snapDir, n)))?.isDirectory()) sources.push(n);
  }
  if (sources.length !== 1) return { skipped: { path: snapDir, why: `${sources.length === 0 ? 'no directory' : 'several directories'} naming the source volume` } };
  return {
    snapshot: {
      version: 1,
      id,
      name: id,
      pool: owner.pool,
      node: owner.node,
      sourceVolumeId: sources[0]!,
      mode: 'filesystem',
      data: path.posix.join(dir, HPP_SNAPSHOTS_DIR, id, HPP_SNAPSHOT_DATA),
      sizeBytes: '0',
      createdAt: new Date(dataSt.ctimeMs).toISOString(),
      method: 'copy',
      origin: 'hpp',
      state: 'ready',
    },
  };
}

/**
 * An HPP ephemeral inline volume: made by HPP's NodePublishVolume in its directory under kubelet's id
 * for it (`csi-` and a sha256), and removed by its NodeUnpublishVolume. A pod that kept running across
 * the swap still has one; this driver removes it the same way when the pod goes.
 */
export function isHppEphemeral(rec: Pick<VolumeRecord, 'origin' | 'name'>): boolean {
  return rec.origin === 'hpp' && /^csi-[0-9a-f]{64}$/.test(rec.name);
}

/** What deleting a snapshot removes, relative to the pool root: its data, or for an HPP snapshot its whole directory. */
export function snapshotRemovalPath(snap: Pick<SnapshotRecord, 'data' | 'origin'>): string {
  return snap.origin === 'hpp' ? path.posix.dirname(snap.data) : snap.data;
}

/** The top-level names the driver's own volume records use in the pool root (`data`'s first part). */
export function topLevelNames(records: ReadonlyArray<Pick<VolumeRecord, 'data' | 'origin'>>): Set<string> {
  return new Set(records.filter((r) => r.origin !== 'hpp').map((r) => path.posix.normalize(r.data).split('/')[0]!));
}
