import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { detectQuota } from '../pools/quota.js';
import { fsyncDir } from '../system/atomic-file.js';
import { linuxHost } from '../system/linux-host.js';
import { describeHolders, detachLoop, listLoopDevices } from '../system/loop.js';
import { mountAt, unmount } from '../system/mount.js';
import { loopBackingFile, type NodeScan, type PoolView } from './inspect.js';
import { readMounts } from '../system/mount.js';
import { mountSource, relativeInside } from './mounts.js';
import type { Orphan } from './orphans.js';
import { removeTree } from '../system/walk.js';
import { recordFileName } from '../format/layout.js';
import { parseVolumeRecord, type StoredVolumeRecord } from '../format/records.js';

export interface GcOptions {
  dryRun: boolean;
  includeRecords: boolean;
  includeDirectories: boolean;
}

export type StepResult = 'done' | 'would' | 'skipped' | 'failed';

export interface GcStep extends Orphan {
  result: StepResult;
  message: string;
}

const PHASE: Record<Orphan['action'], number> = { unmount: 0, detach: 1, remove: 2, 'remove-record': 3, none: 4 };

/**
 * Acts on the orphans: unmounts first (deepest mount point first), then detaches loop devices, then
 * removes files and directories, then records. Before each action the kernel or the file system is
 * looked at again, and the action is skipped when what it would act on changed. Nothing outside a
 * pool is removed; outside a pool gc only unmounts and detaches. `report` is called once per step.
 */
export async function runGc(scan: NodeScan, orphans: Orphan[], opts: GcOptions, report: (s: GcStep) => void): Promise<GcStep[]> {
  const views = new Map(scan.views.map((v) => [v.name, v]));
  // Unmounts deepest first, and the later (upper) of two mounts on one point first.
  const order = [...orphans].sort(
    (a, b) => PHASE[a.action] - PHASE[b.action] || (a.action === 'unmount' ? b.path.length - a.path.length || (b.mountId ?? 0) - (a.mountId ?? 0) : 0),
  );
  const steps: GcStep[] = [];
  // Mounts and loop devices gc let go (or, in a dry run, would have) do not hold back what follows:
  // a detached loop device may linger until its last opener (udev) closes it.
  const planned: Planned = opts.dryRun
    ? { mountIds: new Set(orphans.flatMap((o) => (o.action === 'unmount' && o.mountId !== undefined ? [o.mountId] : []))), loops: new Set(orphans.filter((o) => o.action === 'detach').map((o) => o.path)) }
    : { mountIds: new Set(), loops: new Set() };
  const step = (o: Orphan, result: StepResult, message: string) => {
    const s: GcStep = { ...o, result, message };
    steps.push(s);
    report(s);
  };
  for (const o of order) {
    const view = views.get(o.pool)!;
    if (o.action === 'none') {
      step(o, 'skipped', `left alone: ${o.detail}`);
      continue;
    }
    if ((o.requires === '--include-directories' && !opts.includeDirectories) || (o.requires === '--include-records' && !opts.includeRecords)) {
      step(o, 'skipped', `not removed without ${o.requires}: ${o.path}`);
      continue;
    }
    try {
      const why = await stillValid(o, view, planned);
      if (why) {
        step(o, 'skipped', `${o.path}: ${why}; left alone`);
        continue;
      }
      if (opts.dryRun) {
        step(o, 'would', `would ${verb(o)} ${o.path} (${o.detail})`);
        continue;
      }
      const note = await act(o, view);
      if (o.action === 'unmount' && o.mountId !== undefined) planned.mountIds.add(o.mountId);
      if (o.action === 'detach') planned.loops.add(o.path);
      step(o, 'done', `${pastVerb(o)} ${o.path} (${o.detail})${note ? `; ${note}` : ''}`);
    } catch (err) {
      step(o, 'failed', `could not ${verb(o)} ${o.path}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return steps;
}

function verb(o: Orphan): string {
  return o.action === 'remove-record' ? 'remove record' : o.action;
}

function pastVerb(o: Orphan): string {
  return { unmount: 'unmounted', detach: 'detached', remove: 'removed', 'remove-record': 'removed record', none: 'left' }[o.action];
}

/** Mounts (by id) and loop devices that gc has let go of, or in a dry run would have. */
interface Planned {
  mountIds: Set<number>;
  loops: Set<string>;
}

/** Why the orphan must not be acted on any more (it changed since the scan), or undefined. */
async function stillValid(o: Orphan, view: PoolView, planned: Planned): Promise<string | undefined> {
  switch (o.action) {
    case 'unmount': {
      const mounts = await readMounts();
      if (!mounts.some((m) => m.mountId === o.mountId)) return 'no longer mounted';
      const top = mountAt(mounts, o.path);
      if (top?.mountId !== o.mountId) return 'another mount is now on top of it';
      return undefined;
    }
    case 'detach': {
      const d = (await listLoopDevices()).find((l) => l.name === o.path);
      if (!d) return 'no longer attached';
      if (loopBackingFile(d).file !== o.backingFile) return `now backs ${d.backFile}`;
      return undefined;
    }
    case 'remove':
    case 'remove-record':
      return checkRemovable(o.path, view, planned);
    default:
      return 'nothing to do';
  }
}

/**
 * A path gc may remove: strictly inside the pool's real root, reached without any symlink (its parent
 * is its own real path), not a mount point nor above one, and no longer used by a mount or loop device.
 */
async function checkRemovable(p: string, view: PoolView, planned: Planned): Promise<string | undefined> {
  if (relativeInside(view.root, p) === undefined) return `outside pool ${view.name}`;
  const parent = path.dirname(p);
  const realParent = await fsp.realpath(parent).catch(() => undefined);
  if (realParent !== parent) return `its directory ${parent} is not a real path (symlink or gone)`;
  const st = await fsp.lstat(p).catch(() => undefined);
  if (!st) return 'already gone';
  const mounts = await readMounts();
  for (const m of mounts) {
    if (planned.mountIds.has(m.mountId)) continue;
    if (m.mountPoint === p || m.mountPoint.startsWith(`${p}/`)) return `${m.mountPoint} is a mount point`;
    if (view.fs && m.device === view.fs.device) {
      const src = path.posix.join(view.fs.fsPath, path.relative(view.root, p));
      const from = mountSource(m).fsPath;
      if (from === src || from.startsWith(`${src}/`)) return `it is still mounted at ${m.mountPoint}`;
    }
  }
  for (const d of await listLoopDevices()) {
    if (planned.loops.has(d.name)) continue;
    const f = loopBackingFile(d).file;
    if (f === p || f.startsWith(`${p}/`)) return `it still backs ${d.name}`;
  }
  return undefined;
}

/** Does what the orphan needs; returns a note for the log when there is more to say. */
async function act(o: Orphan, view: PoolView): Promise<string | undefined> {
  switch (o.action) {
    case 'unmount':
      await unmount(o.path);
      return;
    case 'detach': {
      const outcome = await detachLoop(o.path);
      if (outcome.detached) return;
      return `still open by ${describeHolders(outcome.holders, outcome.loopsOver)}: the kernel detaches it on last close`;
    }
    case 'remove': {
      const st = await fsp.lstat(o.path);
      if (st.isDirectory()) {
        const mounts = await readMounts();
        await removeTree(o.path, new Set(mounts.map((m) => m.mountPoint)));
      } else {
        await fsp.unlink(o.path);
      }
      await fsyncDir(path.dirname(o.path));
      return;
    }
    case 'remove-record': {
      const rec = await readRecordAgain(o.path, view);
      // Still the record the scan saw: its data is still missing.
      if (await fsp.lstat(view.pool.resolveInside(rec.data)).then(() => true, () => false)) {
        throw new Error('its data has reappeared');
      }
      await fsp.unlink(o.path);
      await fsyncDir(path.dirname(o.path));
      if (typeof rec.projectId === 'number') {
        // As the daemon does on delete: lift the project limit that outlives the directory.
        const quota = await detectQuota(linuxHost(), view.root, view.pool.metaDir).catch(() => undefined);
        await quota?.release(rec.projectId).catch(() => {});
      }
      return;
    }
    default:
      return;
  }
}

/** The record gc is about to remove, read again through the validator the scan used. */
async function readRecordAgain(file: string, view: PoolView): Promise<StoredVolumeRecord> {
  const name = recordFileName(path.basename(file))?.name;
  if (name === undefined) throw new Error('not a record file');
  return parseVolumeRecord(await fsp.readFile(file, 'utf8'), { file, name, pool: view.name, root: view.root });
}
