import { constants, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { PoolConfig } from '../pools/config.js';
import { Pool } from '../pools/pool.js';
import { linuxHost } from '../system/linux-host.js';
import { CorruptRecordError } from '../format/corrupt.js';
import { BLOCK_DIR, META_DIR, TMP_DIR, blockImagePath, isRecordTempName, recordFileName, snapshotBuildPath, volumeBuildPath } from '../format/layout.js';
import { parseSnapshotRecord, parseVolumeRecord, replayPublications, unvalidatedData, type SnapshotRecord, type VolumeRecord } from '../format/records.js';
import { devString, listLoopDevices, type LoopDevice } from '../system/loop.js';
import { mountAt, readMounts, type MountEntry } from '../system/mount.js';
import { daemonLockState, type LockState } from './locks.js';
import { hppDirOf, scanHpp, topLevelNames } from '../volumes/hpp-volumes.js';
import { locateInFilesystem, mountSource, relativeInside, type FsLocation } from './mounts.js';

/*
 * Read-only inspection of the pools of this node, straight from their on-disk format (src/format/:
 * the layout, and the daemon's own record validator): records in .hpp/volumes, images in .hpp/block,
 * builds in .hpp/tmp, deleted data in .hpp/trash; and from the kernel: /proc/self/mountinfo and the
 * loop devices. Nothing here writes. Every path is handled from the pool's real path, the form
 * mountinfo and losetup report.
 */

export type PoolState = 'ready' | 'missing' | 'not-directory' | 'not-writable' | 'not-mounted' | 'unusable';

/** Where a record's data stands on disk. */
export type DataState =
  /** There, of the right type. */
  | 'present'
  /** Gone (and no build of it in tmp). */
  | 'missing'
  /** Not in place but in .hpp/tmp: a create the daemon finishes on start. */
  | 'building'
  /** Something else is there (a symlink, a file where a directory belongs...). */
  | 'wrong-type';

export interface LoadedRecord {
  rec: VolumeRecord;
  /** The record file; undefined for a hostpath-provisioner volume that has none yet (the daemon writes it on first change). */
  file?: string;
  /** The record's `data`, normalised, relative to the pool root. */
  rel: string;
  dataPath: string;
  data: DataState;
  /** Publication targets: real path (what mountinfo shows) → the target as recorded. */
  targets: Map<string, string>;
}

/** A snapshot record, and where its data stands. */
export interface LoadedSnapshot {
  rec: SnapshotRecord;
  /** undefined: a hostpath-provisioner snapshot without a record of its own. */
  file?: string;
  dataPath: string;
  /** `building`: committed, its data still in tmp/ (moved into place on the daemon's next start). */
  data: DataState;
}

export interface BadRecord {
  file: string;
  error: string;
  /**
   * What the record may own, relative to the pool root: its `data` when that can be read, and the
   * default places of a volume of its file name. Kept out of every orphan list: a record that does not
   * parse, or names another pool (a pool renamed in the configuration), must not cost a volume its data.
   */
  claims: string[];
}

export interface PoolView {
  cfg: PoolConfig;
  name: string;
  /** The pool path as configured. */
  path: string;
  /** Its real path (symlinks resolved); the configured path while it does not exist. */
  root: string;
  /** A Pool on the real path: directory names, resolveInside(), statfs. */
  pool: Pool;
  state: PoolState;
  reason?: string;
  daemon: LockState;
  /** <root>/.hpp is there (a real directory): a daemon has prepared this pool. */
  initialized: boolean;
  fs?: FsLocation;
  records: LoadedRecord[];
  badRecords: BadRecord[];
  /** Leftovers of atomic writes in the record directories (absolute paths). */
  tempFiles: string[];
  /** Names with a snapshot record: their builds in tmp/ ('@name') belong to the daemon. */
  snapshotNames: Set<string>;
  /** The snapshot records that could be read (hppctl snapshots). */
  snapshots: LoadedSnapshot[];
  /** Snapshot record files that could not be read, and why. */
  badSnapshots: Array<{ file: string; error: string }>;
  /** Parts of the layout that were not read because they are not plain directories. */
  problems: string[];
  /**
   * Where the pool's hostpath-provisioner volumes are (relative to the root; '.': the root itself), as the
   * daemon finds them (volumes/hpp-volumes.ts): never an orphan, never garbage, their mounts left alone.
   */
  hppDir?: string;
}

/** Is `rel` (relative to the pool root) hostpath-provisioner data: its directory, or inside it? */
export function isHppData(view: PoolView, rel: string): boolean {
  const dir = view.hppDir;
  if (dir === undefined) return false;
  if (dir !== '.') return rel === dir || rel.startsWith(`${dir}/`);
  const top = rel.split('/')[0]!;
  return top === 'snapshots' || view.records.some((r) => r.rec.origin === 'hpp' && r.rel.split('/')[0] === top);
}

export function isScannable(v: PoolView): boolean {
  return v.state === 'ready' || v.state === 'not-writable';
}

export function blockDir(v: PoolView): string {
  return path.join(v.root, BLOCK_DIR);
}

/** lstat-based: true for a real directory, false when absent; a symlink or other type is reported, never followed. */
async function plainDir(p: string, problems: string[]): Promise<boolean> {
  try {
    const st = await fsp.lstat(p);
    if (st.isDirectory()) return true;
    problems.push(`${p} is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}: not read, never followed`);
    return false;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    problems.push(`${p}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    return false;
  }
}

export async function lstatOrUndefined(p: string) {
  try {
    return await fsp.lstat(p, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/** The pool's state, its daemon lock and where it lives, without reading any volume. */
export async function openPool(cfg: PoolConfig, mounts: MountEntry[]): Promise<PoolView> {
  let root = cfg.path;
  let state: PoolState = 'ready';
  let reason: string | undefined;
  const problems: string[] = [];
  try {
    root = await fsp.realpath(cfg.path);
    const st = await fsp.stat(root);
    if (!st.isDirectory()) {
      state = 'not-directory';
      reason = `${cfg.path} is not a directory`;
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    state = code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : 'unusable';
    reason = code === 'ENOENT' || code === 'ENOTDIR' ? `${cfg.path} does not exist` : `${cfg.path}: ${code ?? String(err)}`;
  }
  if (state === 'ready' && cfg.device) {
    const at = mountAt(mounts, root);
    const dev = await fsp.stat(cfg.device, { bigint: true }).then((s) => (s.isBlockDevice() ? devString(s.rdev) : undefined), () => undefined);
    if (!at) {
      state = 'not-mounted';
      reason = `device ${cfg.device} is not mounted at ${root} (the daemon mounts it when it starts)`;
    } else if (dev !== undefined && at.device !== dev) {
      state = 'not-mounted';
      reason = `${root} has ${at.source} (${at.device}) mounted, not ${cfg.device} (${dev})`;
    }
  }
  if (state === 'ready') {
    try {
      await fsp.access(root, constants.W_OK);
    } catch (err) {
      state = 'not-writable';
      reason = `${root} is not writable (${(err as NodeJS.ErrnoException).code})`;
    }
  }
  const pool = new Pool({ ...cfg, path: root }, linuxHost());
  const scannable = state === 'ready' || state === 'not-writable';
  const initialized = scannable && (await plainDir(pool.metaDir, problems));
  const daemon = initialized ? await daemonLockState(pool.lockFile) : ({ held: false } as const);
  return {
    cfg,
    name: cfg.name,
    path: cfg.path,
    root,
    pool,
    state,
    ...(reason ? { reason } : {}),
    daemon,
    initialized,
    ...(scannable ? { fs: locateInFilesystem(mounts, root) } : {}),
    records: [],
    badRecords: [],
    tempFiles: [],
    snapshotNames: new Set(),
    snapshots: [],
    badSnapshots: [],
    problems,
  };
}

/**
 * The pool's hostpath-provisioner volumes and snapshots that have no record yet, added to the view as the
 * daemon serves them (read only, the daemon's own scan).
 */
async function loadHpp(view: PoolView): Promise<void> {
  const ours = topLevelNames(view.records.map((r) => r.rec));
  const where = await hppDirOf(view.root, view.cfg.hppVolumes, ours);
  if (where.note) view.problems.push(`hostpath-provisioner volumes not served: ${where.note}`);
  if (where.dir === undefined) return;
  view.hppDir = where.dir;
  const recorded = new Set([...view.records.map((r) => r.rec), ...view.snapshots.map((s) => s.rec)].filter((r) => r.origin === 'hpp').map((r) => r.name));
  const taken = new Set([...view.records.map((r) => r.rec), ...view.snapshots.map((s) => s.rec)].filter((r) => r.origin !== 'hpp').map((r) => r.name));
  taken.add(META_DIR);
  for (const b of view.badRecords) for (const c of b.claims) taken.add(c.split('/')[0]!);
  if (where.dir === '.') for (const n of ours) taken.add(n);
  const scan = await scanHpp(view.root, where.dir, { pool: view.name, node: '' }, taken, { rootIsMount: view.fs?.mount.mountPoint === view.root });
  for (const rec of scan.volumes) {
    if (recorded.has(rec.name)) continue;
    const dataPath = view.pool.resolveInside(rec.data);
    view.records.push({ rec, rel: path.relative(view.root, dataPath), dataPath, data: 'present', targets: new Map() });
  }
  for (const rec of scan.snapshots) {
    if (recorded.has(rec.name)) continue;
    view.snapshots.push({ rec, dataPath: view.pool.resolveInside(rec.data), data: 'present' });
  }
  for (const s of scan.skipped) view.problems.push(`${s.path}: not served as a hostpath-provisioner volume (${s.why})`);
}

/** mountinfo shows real paths: a target's parent is resolved (kubelet's directory may sit behind a symlink). */
async function realTarget(target: string): Promise<string> {
  const parent = await fsp.realpath(path.dirname(target)).catch(() => undefined);
  return parent ? path.join(parent, path.basename(target)) : target;
}

/**
 * What an unreadable record may own: the default places of a volume of its name, and its `data` when
 * the file holds one (`text`: the file's text, when it could be read).
 */
function claimsOf(text: string | undefined, stem: string, view: PoolView): string[] {
  const claims = [stem, blockImagePath(stem), path.posix.join(TMP_DIR, stem)];
  const data = text === undefined ? undefined : unvalidatedData(text);
  try {
    if (typeof data === 'string') claims.push(path.relative(view.root, view.pool.resolveInside(data)));
  } catch {
    // A data path outside the pool: the default places are all we can protect.
  }
  return claims;
}

/** Is `rel` (relative to the pool root) one of the places an unreadable record may own, or inside one? */
export function isClaimed(view: PoolView, rel: string): boolean {
  return view.badRecords.some((b) => b.claims.some((c) => rel === c || rel.startsWith(`${c}/`)));
}

/** Read the pool's records (never modifying anything, unlike the daemon's loader which removes temp files). */
export async function loadRecords(view: PoolView): Promise<void> {
  if (!view.initialized) {
    // A pool no daemon of ours has prepared: HPP's volumes are still listed, and still kept.
    if (isScannable(view)) await loadHpp(view);
    return;
  }
  await loadOwnRecords(view);
  await loadHpp(view);
}

async function loadOwnRecords(view: PoolView): Promise<void> {
  const { pool } = view;
  let logged = new Map<string, VolumeRecord['publications']>();
  try {
    const replay = replayPublications(await fsp.readFile(pool.publicationLog, 'utf8'), pool.publicationLog);
    logged = replay.state;
    if (replay.badLines > 0) view.problems.push(`${pool.publicationLog}: ${replay.badLines} torn line(s), skipped (the daemon skips them too)`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') view.problems.push(`${pool.publicationLog}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (await plainDir(pool.volumesDir, view.problems)) {
    for (const n of (await fsp.readdir(pool.volumesDir)).sort()) {
      const file = path.join(pool.volumesDir, n);
      if (isRecordTempName(n)) {
        view.tempFiles.push(file);
        continue;
      }
      // `<name>.deleting`: a record whose delete is committed; the daemon finishes it on its next start.
      const parsed = recordFileName(n);
      if (!parsed) continue;
      const { name: stem, deleting } = parsed;
      let rec: VolumeRecord;
      let text: string | undefined;
      try {
        const st = await fsp.lstat(file);
        if (!st.isFile()) throw new Error('not a regular file');
        text = await fsp.readFile(file, 'utf8');
        const stored = parseVolumeRecord(text, { file, name: stem, pool: view.name, root: view.root });
        rec = { ...stored, publications: stored.publications ?? {} };
        if (deleting) rec.state = 'deleting';
      } catch (err) {
        const error = err instanceof CorruptRecordError ? err.detail : err instanceof Error ? err.message : String(err);
        view.badRecords.push({ file, error, claims: claimsOf(text, stem, view) });
        continue;
      }
      // Publications are in the pool's publication log; a record from before it carries them itself.
      rec.publications = logged.get(rec.name) ?? rec.publications;
      const dataPath = pool.resolveInside(rec.data);
      const rel = path.relative(view.root, dataPath);
      const st = await lstatOrUndefined(dataPath);
      let data: DataState;
      if (!st) data = (await lstatOrUndefined(volumeBuildPath(pool, rec.name))) ? 'building' : 'missing';
      else if (rec.mode === 'block' ? st.isFile() : st.isDirectory()) data = 'present';
      else data = 'wrong-type';
      const targets = new Map<string, string>();
      for (const t of Object.keys(rec.publications)) {
        targets.set(t, t);
        targets.set(await realTarget(t), t);
      }
      view.records.push({ rec, file, rel, dataPath, data, targets });
    }
  }
  // Snapshot records (when this daemon version keeps them): their names, so that a snapshot being
  // built in tmp/ is not taken for garbage; and the records themselves, for hppctl snapshots.
  const snapDir = pool.snapshotRecordsDir;
  if (await plainDir(snapDir, view.problems)) {
    for (const n of (await fsp.readdir(snapDir)).sort()) {
      if (isRecordTempName(n)) view.tempFiles.push(path.join(snapDir, n));
      else {
        const parsed = recordFileName(n);
        if (!parsed) continue;
        view.snapshotNames.add(parsed.name);
        const loaded = await loadSnapshot(view, path.join(snapDir, n), parsed.name, parsed.deleting);
        if ('error' in loaded) view.badSnapshots.push(loaded);
        else view.snapshots.push(loaded);
      }
    }
  }
}

async function loadSnapshot(view: PoolView, file: string, name: string, deleting: boolean): Promise<LoadedSnapshot | { file: string; error: string }> {
  let rec: SnapshotRecord;
  try {
    const st = await fsp.lstat(file);
    if (!st.isFile()) throw new Error('not a regular file');
    rec = parseSnapshotRecord(await fsp.readFile(file, 'utf8'), { file, name, pool: view.name, root: view.root });
    if (deleting) rec = { ...rec, state: 'deleting' };
  } catch (err) {
    return { file, error: err instanceof CorruptRecordError ? err.detail : err instanceof Error ? err.message : String(err) };
  }
  const dataPath = view.pool.resolveInside(rec.data);
  const st = await lstatOrUndefined(dataPath);
  let data: DataState;
  if (!st) data = (await lstatOrUndefined(snapshotBuildPath(view.pool, name))) ? 'building' : 'missing';
  else if (rec.mode === 'block' ? st.isFile() : st.isDirectory()) data = 'present';
  else data = 'wrong-type';
  return { rec, file, dataPath, data };
}

/** A mount whose source is in a pool: a directory bound from it, or a loop device of an image in it. */
export interface MountUse {
  mount: MountEntry;
  view: PoolView;
  via: 'directory' | 'loop-device' | 'loop-filesystem';
  /** The source, relative to the pool root (the directory, or the loop device's image). */
  rel: string;
  /** The source was deleted after it was mounted. */
  deleted: boolean;
  loop?: LoopDevice;
  owner?: LoadedRecord;
  /** The source is strictly below the owner's directory (a subPath mount). */
  subdir: boolean;
  /** The mount point is one of the owner's recorded publications, in the owner's mode. */
  published: boolean;
  /** No record owns the source, but an unreadable record may (see BadRecord.claims). */
  claimed: boolean;
  /** The source is hostpath-provisioner data: HPP may have made the mount (a VM that kept running across the swap). */
  hpp: boolean;
}

/** A loop device whose backing file is in a pool. */
export interface LoopUse {
  loop: LoopDevice;
  view: PoolView;
  file: string;
  rel: string;
  deleted: boolean;
  owner?: LoadedRecord;
  /** An unreadable record may own the backing file. */
  claimed: boolean;
}

export interface NodeScan {
  views: PoolView[];
  mounts: MountEntry[];
  /** Every mount point (real paths). */
  mountPoints: Set<string>;
  mountUses: MountUse[];
  loopUses: LoopUse[];
}

function ownerOf(view: PoolView, rel: string): { owner?: LoadedRecord; subdir: boolean } {
  for (const r of view.records) {
    if (rel === r.rel) return { owner: r, subdir: false };
    if (r.rec.mode === 'filesystem' && rel.startsWith(`${r.rel}/`)) return { owner: r, subdir: true };
  }
  return { subdir: false };
}

export function loopBackingFile(d: LoopDevice): { file: string; deleted: boolean } {
  const deleted = d.backFile.endsWith(' (deleted)');
  return { file: deleted ? d.backFile.slice(0, -' (deleted)'.length) : d.backFile, deleted };
}

/** Ties the kernel's mounts and loop devices to the pools' records. */
export async function scanNode(views: PoolView[], mounts?: MountEntry[]): Promise<NodeScan> {
  mounts ??= await readMounts();
  const loops = await listLoopDevices().catch(() => [] as LoopDevice[]);
  const scanned = views.filter(isScannable);
  const loopUses: LoopUse[] = [];
  for (const loop of loops) {
    const { file, deleted } = loopBackingFile(loop);
    for (const view of scanned) {
      const rel = relativeInside(view.root, file);
      if (rel === undefined) continue;
      const { owner } = ownerOf(view, rel);
      loopUses.push({
        loop,
        view,
        file,
        rel,
        deleted,
        ...(owner && !deleted && owner.rec.mode === 'block' && owner.data === 'present' ? { owner } : {}),
        claimed: !deleted && isClaimed(view, rel),
      });
    }
  }
  const mountUses: MountUse[] = [];
  for (const m of mounts) {
    const src = mountSource(m);
    for (const view of scanned) {
      if (!view.fs || m.device !== view.fs.device) continue;
      const rel = relativeInside(view.fs.fsPath, src.fsPath);
      if (rel === undefined) continue;
      const { owner, subdir } = ownerOf(view, rel);
      const published = owner !== undefined && owner.rec.mode === 'filesystem' && !subdir && owner.targets.has(m.mountPoint);
      mountUses.push({ mount: m, view, via: 'directory', rel, deleted: src.deleted, ...(owner ? { owner } : {}), subdir, published, claimed: isClaimed(view, rel), hpp: isHppData(view, rel) });
    }
    // A loop device node bound onto a file (block publication), or a filesystem mounted from a loop device.
    const base = path.posix.basename(src.fsPath);
    let lu: LoopUse | undefined;
    let via: MountUse['via'] | undefined;
    if (/^\/dev\/loop\d+$/.test(m.source)) {
      lu = loopUses.find((u) => u.loop.name === m.source);
      via = 'loop-filesystem';
    } else if (/^loop\d+$/.test(base)) {
      const cand = loopUses.find((u) => u.loop.name === `/dev/${base}`);
      if (cand && (await sameDevice(m.mountPoint, cand.loop.name))) {
        lu = cand;
        via = 'loop-device';
      }
    }
    // Only loop devices of the driver's own files (.hpp/...) count: not, say, a disk.img a user attached.
    if (lu && via && (lu.owner || lu.rel.startsWith(`${META_DIR}/`))) {
      const published = via === 'loop-device' && lu.owner !== undefined && lu.owner.targets.has(m.mountPoint);
      mountUses.push({ mount: m, view: lu.view, via, rel: lu.rel, deleted: lu.deleted, loop: lu.loop, ...(lu.owner ? { owner: lu.owner } : {}), subdir: false, published, claimed: lu.claimed, hpp: false });
    }
  }
  return { views, mounts, mountPoints: new Set(mounts.map((m) => m.mountPoint)), mountUses, loopUses };
}

/** Is the block device node at `p` the device `dev`? */
async function sameDevice(p: string, dev: string): Promise<boolean> {
  try {
    const [a, b] = await Promise.all([fsp.stat(p, { bigint: true }), fsp.stat(dev, { bigint: true })]);
    return a.isBlockDevice() && b.isBlockDevice() && a.rdev === b.rdev;
  } catch {
    return false;
  }
}

/**
 * Is this use a legitimate one: a recorded publication, a propagated copy of one (same or slave peer
 * group: unmounting a shared peer would take the publication with it), or a subPath mount inside a
 * volume that is published now?
 */
export function isLegitimateUse(u: MountUse, scan: NodeScan): boolean {
  if (u.published || u.claimed || u.hpp) return true;
  const groups = new Set<number>();
  for (const p of scan.mountUses) if (p.published && p.mount.shared !== undefined) groups.add(p.mount.shared);
  if ((u.mount.shared !== undefined && groups.has(u.mount.shared)) || (u.mount.master !== undefined && groups.has(u.mount.master))) return true;
  if (u.subdir && u.owner && scan.mountUses.some((p) => p.published && p.owner === u.owner)) return true;
  return false;
}

/** Which of a record's publication targets are really mounted now (with this volume). */
export function mountedTargets(r: LoadedRecord, scan: NodeScan): Set<string> {
  const out = new Set<string>();
  for (const u of scan.mountUses) {
    if (u.owner !== r || !u.published) continue;
    const given = r.targets.get(u.mount.mountPoint);
    if (given) out.add(given);
  }
  return out;
}
