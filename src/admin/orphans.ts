import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { formatBytes } from './format.js';
import { blockDir, isClaimed, isHppData, isLegitimateUse, isScannable, lstatOrUndefined, type NodeScan, type PoolView } from './inspect.js';
import { diskUsage } from '../system/walk.js';
import { BLOCK_DIR, META_DIR, TMP_DIR, TRASH_DIR, diskImagePath, snapshotBuildName } from '../format/layout.js';

export type OrphanKind =
  /** (a) a directory in the pool root that no record owns */
  | 'directory'
  /** (b) a file in .hpp/block that no block volume owns */
  | 'image'
  /** (c) a leftover in .hpp/tmp */
  | 'tmp'
  /** (c) deleted data in .hpp/trash */
  | 'trash'
  /** (d) a loop device of a pool image that no record owns, or whose image was deleted */
  | 'loop'
  /** (e) a mount of a pool's volume directory or loop device that is no recorded publication */
  | 'mount'
  /** (f) a record whose data is missing */
  | 'record'
  /** (g) an interrupted atomic write of a record */
  | 'temp-file'
  /** a record file that cannot be read: reported, never removed */
  | 'bad-record';

export type GcAction = 'unmount' | 'detach' | 'remove' | 'remove-record' | 'none';

export interface Orphan {
  kind: OrphanKind;
  pool: string;
  /** What gc acts on: the mount point, the loop device, or the file/directory. */
  path: string;
  detail: string;
  action: GcAction;
  /** The gc flag the action needs. */
  requires?: '--include-directories' | '--include-records';
  /** mount: the mountinfo id (gc checks it is still the top-most mount there). */
  mountId?: number;
  /** loop: the backing file. */
  backingFile?: string;
  /** record: the volume id. */
  volumeId?: string;
}

const KIND_ORDER: OrphanKind[] = ['mount', 'loop', 'image', 'tmp', 'trash', 'temp-file', 'directory', 'record', 'bad-record'];

/** What gc does with an orphan, in words. */
export function gcText(o: Orphan): string {
  const needs = o.requires ? ` (with ${o.requires})` : '';
  switch (o.action) {
    case 'unmount':
      return 'unmount';
    case 'detach':
      return 'detach';
    case 'remove':
      return `remove${needs}`;
    case 'remove-record':
      return `remove record${needs}`;
    default:
      return 'nothing (left alone)';
  }
}

/** Mount points at or below `p` that gc will not unmount (`orphanMounts` are mount ids gc unmounts). */
function keptMountsInside(scan: NodeScan, p: string, orphanMounts: Set<number>): string[] {
  const kept = scan.mounts.filter((m) => !orphanMounts.has(m.mountId) && (m.mountPoint === p || m.mountPoint.startsWith(`${p}/`)));
  return [...new Set(kept.map((m) => m.mountPoint))];
}

async function sizeText(p: string, scan: NodeScan): Promise<string> {
  const du = await diskUsage(p, { mountPoints: scan.mountPoints });
  return `${formatBytes(du.bytes)} allocated in ${du.entries} ${du.entries === 1 ? 'entry' : 'entries'}`;
}

/** The entries of one of the pool's own directories; one that is a symlink is reported, never followed. */
async function readdirIfPlain(dir: string, view: PoolView): Promise<string[]> {
  const st = await lstatOrUndefined(dir);
  if (!st) return [];
  if (!st.isDirectory()) {
    view.problems.push(`${dir} is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}: not read, never followed`);
    return [];
  }
  return (await fsp.readdir(dir)).sort();
}

/** Everything in the pools that has no metadata, and metadata that has no data. */
export async function findOrphans(scan: NodeScan): Promise<Orphan[]> {
  const out: Orphan[] = [];
  const strayMounts = scan.mountUses.filter((u) => !isLegitimateUse(u, scan));
  const orphanMounts = new Set(strayMounts.map((u) => u.mount.mountId));
  for (const view of scan.views.filter(isScannable)) out.push(...(await poolOrphans(view, scan, orphanMounts)));
  for (const u of strayMounts) {
    const m = u.mount;
    let what: string;
    if (u.via === 'directory') {
      what = u.owner
        ? `bind mount of ${u.rel}${u.subdir ? ' (inside volume ' + u.owner.rec.name + ', which is not published)' : ` (volume ${u.owner.rec.name})`}, not a recorded publication`
        : `bind mount of ${u.rel}, which no volume owns`;
    } else {
      const dev = u.loop?.name ?? '?';
      const img = u.owner ? `image of volume ${u.owner.rec.name}` : `${u.rel}, which no volume owns`;
      what = u.via === 'loop-device' ? `${dev} (${img}) bound here, not a recorded publication` : `filesystem on ${dev} (${img})`;
    }
    if (u.deleted) what += '; its source was deleted';
    out.push({ kind: 'mount', pool: u.view.name, path: m.mountPoint, detail: what, action: 'unmount', mountId: m.mountId });
  }
  for (const u of scan.loopUses) {
    if (u.owner || u.claimed) continue;
    const area = u.rel.split('/').slice(0, 2).join('/');
    if (![BLOCK_DIR, TMP_DIR, TRASH_DIR].includes(area)) continue;
    const why = u.deleted ? `its image ${u.file} was deleted` : area === BLOCK_DIR ? `its image ${u.file} has no record` : `it backs ${u.file}, in ${area}`;
    out.push({ kind: 'loop', pool: u.view.name, path: u.loop.name, detail: why, action: 'detach', backingFile: u.file });
  }
  const key = (o: Orphan) => `${o.pool}\0${KIND_ORDER.indexOf(o.kind).toString().padStart(2, '0')}\0${o.path}`;
  return out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

async function poolOrphans(view: PoolView, scan: NodeScan, orphanMounts: Set<number>): Promise<Orphan[]> {
  const out: Orphan[] = [];
  const pool = view.name;
  const { root } = view;
  const records = view.records;

  // (a) directories in the root that no record owns.
  const ownedTop = new Set(records.map((r) => r.rel.split('/')[0]!));
  const claimed = (p: string) => isClaimed(view, path.relative(root, p));
  const rootIsMount = scan.mountPoints.has(root);
  for (const n of await readdirIfPlain(root, view)) {
    if (n === META_DIR || ownedTop.has(n) || (n === 'lost+found' && rootIsMount) || claimed(path.join(root, n)) || isHppData(view, n)) continue;
    const p = path.join(root, n);
    const st = await lstatOrUndefined(p);
    if (!st?.isDirectory()) continue;
    const inside = keptMountsInside(scan, p, orphanMounts);
    if (inside.length > 0) {
      out.push({ kind: 'directory', pool, path: p, detail: `no record owns it; mount points inside (${inside.join(', ')}): left alone`, action: 'none' });
      continue;
    }
    if (!view.initialized) {
      // No .hpp: no daemon has served this path (or the path is wrong). Nothing here is ours to remove.
      out.push({ kind: 'directory', pool, path: p, detail: `no record owns it, but ${root} has no .hpp: not a pool this driver has used; left alone`, action: 'none' });
      continue;
    }
    const img = await lstatOrUndefined(diskImagePath(p));
    const detail = `no record owns it; ${await sizeText(p, scan)}${img?.isFile() ? '; holds a disk.img' : ''}`;
    out.push({ kind: 'directory', pool, path: p, detail, action: 'remove', requires: '--include-directories' });
  }
  if (!view.initialized) return out;

  // (b) files in the block area that no block volume owns.
  const bdir = blockDir(view);
  const ownedImages = new Set(records.filter((r) => r.rec.mode === 'block').map((r) => r.dataPath));
  for (const n of await readdirIfPlain(bdir, view)) {
    const p = path.join(bdir, n);
    if (ownedImages.has(p) || claimed(p)) continue;
    const st = await lstatOrUndefined(p);
    if (!st) continue;
    const attached = scan.loopUses.filter((u) => u.file === p && !u.deleted).map((u) => u.loop.name);
    let detail = st.isFile() ? `no record owns it; ${formatBytes(st.size)} image, ${formatBytes(st.blocks * 512n)} allocated` : `no record owns it; ${st.isDirectory() ? 'a directory' : st.isSymbolicLink() ? 'a symbolic link' : 'not a regular file'}`;
    if (attached.length > 0) detail += `; attached as ${attached.join(', ')}`;
    out.push({ kind: 'image', pool, path: p, detail, action: 'remove' });
  }

  // (c) builds in tmp/ that no record will finish; everything in trash/.
  const byName = new Map(records.map((r) => [r.rec.name, r]));
  const snapshotBuilds = new Set([...view.snapshotNames].map(snapshotBuildName));
  for (const n of await readdirIfPlain(view.pool.tmpDir, view)) {
    const p = path.join(view.pool.tmpDir, n);
    if (snapshotBuilds.has(n)) continue;
    const owner = byName.get(n);
    if ((owner && owner.data === 'building') || claimed(p)) continue;
    const detail = owner ? `build of volume ${n}, whose data is already in place` : 'uncommitted build (no record)';
    out.push({ kind: 'tmp', pool, path: p, detail: `${detail}; ${await sizeText(p, scan)}`, action: 'remove' });
  }
  for (const n of await readdirIfPlain(view.pool.trashDir, view)) {
    const p = path.join(view.pool.trashDir, n);
    out.push({ kind: 'trash', pool, path: p, detail: `deleted data not yet swept; ${await sizeText(p, scan)}`, action: 'remove' });
  }

  // (f) records whose data is missing.
  for (const r of records) {
    if (r.data !== 'missing' || r.file === undefined) continue;
    const pubs = Object.keys(r.rec.publications);
    const detail =
      `volume ${r.rec.id} (${r.rec.mode}, ${formatBytes(BigInt(r.rec.capacityBytes))}${r.rec.state === 'deleting' ? ', being deleted' : ''}): ` +
      `its data ${r.dataPath} is missing${pubs.length > 0 ? `; recorded publications: ${pubs.join(', ')}` : ''}`;
    out.push({ kind: 'record', pool, path: r.file, detail, action: 'remove-record', requires: '--include-records', volumeId: r.rec.id });
  }

  // (g) interrupted atomic writes.
  for (const f of view.tempFiles) {
    out.push({ kind: 'temp-file', pool, path: f, detail: 'temporary file of an interrupted metadata write', action: 'remove' });
  }
  for (const b of view.badRecords) {
    out.push({ kind: 'bad-record', pool, path: b.file, detail: `unreadable record (${b.error}); the daemon ignores it too, and what it may own is kept: inspect by hand`, action: 'none' });
  }
  return out;
}
