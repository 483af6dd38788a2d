import path from 'node:path';
import { isAtomicTempName } from '../system/atomic-file.js';
import { isValidName } from '../volumes/ids.js';

/*
 * Every name the driver gives to something under a pool, in one place (docs/design.md, "On-disk format"):
 *
 *   <root>/<name>/                       a Filesystem volume (or <namespace>-<pvc>-<pv> with the legacy naming prefix)
 *   <root>/<name>/disk.img               its KubeVirt disk image, when it has one
 *   <root>/.hpp/                         the pool's private directory (mode 0700)
 *   <root>/.hpp/volumes/<name>.json      volume record; <name>.deleting once its delete is committed
 *   <root>/.hpp/snapshot-records/<name>.json   snapshot record; <name>.deleting likewise
 *   <root>/.hpp/block/<name>.img         a Block volume's image
 *   <root>/.hpp/snapshots/<name>         snapshot data (a directory tree, or an image file)
 *   <root>/.hpp/tmp/<name>, @<name>      a volume, a snapshot being built
 *   <root>/.hpp/trash/<base>.<ms>.<hex>  deleted data waiting to be removed
 *   <root>/.hpp/publications.log         where volumes are published (never fsynced)
 *   <root>/.hpp/project-ids.json         the next project id of the pool
 *   <root>/.hpp/daemon.lock              flock'ed by the daemon serving the pool
 *
 * and what KubeVirt's hostpath-provisioner (HPP) left, served in place (volumes/hpp-volumes.ts; the
 * HPP directory is `csi`, or what the pool's hppVolumes says):
 *
 *   <root>/csi/<pv name>/                         an HPP volume (its id is the PV name)
 *   <root>/csi/snapshots/<snapshot id>/data/      an HPP snapshot's data (cp -rp --reflink=auto of the volume)
 *   <root>/csi/snapshots/<snapshot id>/<pv name>/ an empty directory naming the snapshot's source volume
 *
 * An HPP volume gets a record (origin "hpp", its id the PV name, `data` its directory) the first time
 * the daemon changes something about it; its data is never moved to make it ours.
 *
 * Paths inside records (`data`) are relative to the pool root, so a pool keeps working when it is
 * mounted elsewhere.
 */

/** The pool's private directory, relative to its root. */
export const META_DIR = '.hpp';
/** Block volumes' images, relative to the pool root. */
export const BLOCK_DIR = `${META_DIR}/block`;
/** Snapshot data, relative to the pool root. */
export const SNAPSHOTS_DIR = `${META_DIR}/snapshots`;
/** Builds, relative to the pool root. */
export const TMP_DIR = `${META_DIR}/tmp`;
/** Deleted data, relative to the pool root. */
export const TRASH_DIR = `${META_DIR}/trash`;
/** The KubeVirt disk image in a Filesystem volume (CDI's name). */
export const DISK_IMAGE = 'disk.img';

/** Where HPP's operator has its CSI driver keep volumes, relative to the pool path (`<spec path>/csi`). */
export const HPP_CSI_DIR = 'csi';
/** HPP's snapshot area inside its volume directory (the operator's `<path>/csi/snapshots`). */
export const HPP_SNAPSHOTS_DIR = 'snapshots';
/** The copy of the source volume inside an HPP snapshot's directory. */
export const HPP_SNAPSHOT_DATA = 'data';

const RECORD_SUFFIX = '.json';
/** A record renamed to `<name>.deleting`: its delete is committed and is finished on the next start. */
const DELETING_SUFFIX = '.deleting';

/** The absolute paths of a pool's layout. */
export interface PoolLayout {
  root: string;
  metaDir: string;
  volumesDir: string;
  snapshotRecordsDir: string;
  blockDir: string;
  snapshotsDir: string;
  tmpDir: string;
  trashDir: string;
  publicationLog: string;
  projectIds: string;
  lockFile: string;
}

export function poolLayout(root: string): PoolLayout {
  const metaDir = path.join(root, META_DIR);
  return {
    root,
    metaDir,
    volumesDir: path.join(metaDir, 'volumes'),
    snapshotRecordsDir: path.join(metaDir, 'snapshot-records'),
    blockDir: path.join(root, BLOCK_DIR),
    snapshotsDir: path.join(root, SNAPSHOTS_DIR),
    tmpDir: path.join(root, TMP_DIR),
    trashDir: path.join(root, TRASH_DIR),
    publicationLog: path.join(metaDir, 'publications.log'),
    projectIds: projectIdsFile(metaDir),
    lockFile: path.join(metaDir, 'daemon.lock'),
  };
}

/** The directories a prepared pool has (made by Pool.prepare, mode 0700). */
export function layoutDirs(l: PoolLayout): string[] {
  return [l.metaDir, l.volumesDir, l.tmpDir, l.trashDir, l.snapshotsDir, l.snapshotRecordsDir, l.blockDir];
}

/** The pool's project id record, in its private directory. */
export function projectIdsFile(metaDir: string): string {
  return path.join(metaDir, 'project-ids.json');
}

/** The `data` of a Block volume's record: `.hpp/block/<name>.img`. */
export function blockImagePath(name: string): string {
  return path.posix.join(BLOCK_DIR, `${name}.img`);
}

/** The `data` of a snapshot record: `.hpp/snapshots/<name>`. */
export function snapshotDataDir(name: string): string {
  return path.posix.join(SNAPSHOTS_DIR, name);
}

/** A volume is built in tmp/ under its own name. */
export function volumeBuildPath(l: PoolLayout, name: string): string {
  return path.join(l.tmpDir, name);
}

/** Snapshots are built in tmp/ under a name no volume can have ('@' is not allowed in names). */
export function snapshotBuildName(name: string): string {
  return `@${name}`;
}

export function snapshotBuildPath(l: PoolLayout, name: string): string {
  return path.join(l.tmpDir, snapshotBuildName(name));
}

/** A volume's data in a Filesystem volume's directory: its disk.img. */
export function diskImagePath(dir: string): string {
  return path.join(dir, DISK_IMAGE);
}

/** Where deleted data goes: its base name, the time and a random part, so that names never collide. */
export function trashEntryPath(l: PoolLayout, dataPath: string, now: number, random: string): string {
  return path.join(l.trashDir, `${path.basename(dataPath)}.${now}.${random}`);
}

/** The record file of `name` in a record directory. */
export function recordFile(dir: string, name: string): string {
  return path.join(dir, `${name}${RECORD_SUFFIX}`);
}

/** The record of `name` once its delete is committed. */
export function deletingRecordFile(dir: string, name: string): string {
  return path.join(dir, `${name}${DELETING_SUFFIX}`);
}

/**
 * What a file name in a record directory stands for: `<name>.json` a record, `<name>.deleting` a record
 * whose delete is committed. undefined for anything else (temp files, names no volume can have).
 */
export function recordFileName(file: string): { name: string; deleting: boolean } | undefined {
  const deleting = file.endsWith(DELETING_SUFFIX);
  const name = deleting ? file.slice(0, -DELETING_SUFFIX.length) : file.endsWith(RECORD_SUFFIX) ? file.slice(0, -RECORD_SUFFIX.length) : undefined;
  return name !== undefined && isValidName(name) ? { name, deleting } : undefined;
}

/** A temporary file of an interrupted record write (see system/atomic-file.ts): garbage. */
export function isRecordTempName(file: string): boolean {
  return isAtomicTempName(file);
}

/** The publication log is rewritten through this fixed temp name (one daemon per pool). */
export function publicationLogTemp(file: string): string {
  return `${file}.tmp`;
}

/** Absolute path of `rel` inside the pool at `root`; refuses anything that would leave it. */
export function resolveInside(root: string, rel: string, poolName: string): string {
  const abs = path.resolve(root, rel);
  if (abs === root || !abs.startsWith(`${root}/`) || rel.includes('\0')) {
    throw new Error(`path ${JSON.stringify(rel)} is outside pool ${poolName}`);
  }
  return abs;
}
