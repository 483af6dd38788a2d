import { promises as fsp, renameSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../observe/logger.js';
import { fsyncDir } from '../system/atomic-file.js';
import { exists } from '../system/files.js';
import type { Host } from '../system/host.js';
import { removeTree } from '../system/walk.js';
import { snapshotBuildName, snapshotBuildPath, volumeBuildPath } from '../format/layout.js';
import { legacyPublications } from '../format/migrations.js';
import { toStored, type SnapshotRecord, type VolumeRecord } from '../format/records.js';
import type { PoolState } from './pool-state.js';
import { reconcilePublications } from './node-volumes.js';
import { snapshotRemovalPath } from './hpp-volumes.js';
import type { Trash } from './trash.js';

export interface LoadedPool {
  volumes: VolumeRecord[];
  snapshots: SnapshotRecord[];
}

interface Deps {
  host: Host;
  node: string;
  trash: Trash;
  log: Logger;
}

/**
 * Reads a prepared pool's records and brings the pool to a state a crash could not have left:
 * interrupted deletes finished, interrupted creates moved into place, uncommitted builds removed,
 * publications re-made or forgotten, the publication log rewritten compactly.
 */
export async function loadPool(st: PoolState, deps: Deps): Promise<LoadedPool> {
  const { pool } = st;
  const { log } = deps;
  const stored = st.store.loadAll((file, err) => log.error({ pool: pool.name, file, err: String(err) }, 'unreadable volume record left untouched'));
  const { state: logged, badLines } = st.pubLog.read();
  if (badLines > 0) log.warn({ pool: pool.name, file: st.pubLog.file, badLines }, 'skipped torn lines of the publication log (a crash or a power cut)');
  // Records written before the log carry their publications themselves (format/migrations.ts).
  const records: VolumeRecord[] = stored.map((s) => ({ ...s, publications: logged.get(s.name) ?? s.publications ?? {} }));
  const volumes: VolumeRecord[] = [];
  for (const rec of records) {
    if (await reconcileVolume(st, rec, deps)) volumes.push(rec);
  }
  const snaps = st.snapStore.loadAll((file, err) => log.error({ pool: pool.name, file, err: String(err) }, 'unreadable snapshot record left untouched'));
  const snapshots: SnapshotRecord[] = [];
  for (const snap of snaps) {
    if (await reconcileSnapshot(st, snap, deps)) snapshots.push(snap);
  }
  await removeUncommitted(st, new Set([...records.map((r) => r.name), ...snaps.map((r) => snapshotBuildName(r.name))]), deps);
  for (const rec of await reconcilePublications(deps.host, pool, volumes, log)) {
    volumes[volumes.findIndex((k) => k.id === rec.id)] = rec;
  }
  st.pubLog.compact(new Map(volumes.map((r) => [r.name, r.publications])));
  for (const s of stored) {
    const rec = volumes.find((k) => k.name === s.name);
    if (rec && legacyPublications(s)) {
      await st.store.write(toStored(rec));
      log.info({ volume: rec.id }, 'moved publications out of the volume record into the publication log');
    }
  }
  return { volumes, snapshots };
}

/** Finishes what a crash interrupted for one volume; false when the volume is gone (its delete finished). */
async function reconcileVolume(st: PoolState, rec: VolumeRecord, { node, trash, log }: Deps): Promise<boolean> {
  const dataPath = st.pool.resolveInside(rec.data);
  if (rec.state === 'deleting') {
    log.info({ volume: rec.id }, 'finishing interrupted delete');
    await trash.put(st.pool, dataPath);
    await st.store.remove(rec.name);
    return false;
  }
  await finishMove(volumeBuildPath(st.pool, rec.name), dataPath, () => log.info({ volume: rec.id }, 'finishing interrupted create'));
  if (rec.node !== node) {
    // A device-backed pool moved here from another node: the id must keep naming where it lives.
    log.warn({ volume: rec.id, recordedNode: rec.node, node }, 'volume was created on another node');
  }
  return true;
}

async function reconcileSnapshot(st: PoolState, snap: SnapshotRecord, { trash, log }: Deps): Promise<boolean> {
  const dataPath = st.pool.resolveInside(snap.data);
  if (snap.state === 'deleting') {
    log.info({ snapshot: snap.id }, 'finishing interrupted snapshot delete');
    await trash.put(st.pool, st.pool.resolveInside(snapshotRemovalPath(snap)));
    await st.snapStore.remove(snap.name);
    return false;
  }
  await finishMove(snapshotBuildPath(st.pool, snap.name), dataPath, () => log.info({ snapshot: snap.id }, 'finishing interrupted snapshot'));
  return true;
}

/** A build whose record is committed but which is still in tmp/: move it into place. */
async function finishMove(building: string, dataPath: string, say: () => void): Promise<void> {
  if (exists(dataPath) || !exists(building)) return;
  say();
  renameSync(building, dataPath);
  await fsyncDir(path.dirname(dataPath));
}

/** Whatever is in tmp/ without a record is a create that never committed: remove it. */
async function removeUncommitted(st: PoolState, names: Set<string>, { host, log }: Deps): Promise<void> {
  let mountPoints: Set<string> | undefined;
  for (const entry of await fsp.readdir(st.pool.tmpDir)) {
    if (names.has(entry)) continue;
    log.info({ pool: st.pool.name, entry }, 'removing uncommitted volume from tmp');
    mountPoints ??= await host.mounts.points();
    await removeTree(path.join(st.pool.tmpDir, entry), mountPoints);
  }
}
