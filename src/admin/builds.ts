import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { DISK_IMAGE, TMP_DIR } from '../format/layout.js';
import type { VolumeMode } from '../format/records.js';
import { diskUsage } from '../system/walk.js';
import { isClaimed, lstatOrUndefined, type PoolView } from './inspect.js';

/** A volume or snapshot being built in the pool's tmp/, which no record owns yet (the record comes last). */
export interface BuildInProgress {
  pool: string;
  kind: 'volume' | 'snapshot';
  name: string;
  mode: VolumeMode;
  path: string;
  /** Allocated so far (the size of a preallocation or copy under way). */
  allocatedBytes: bigint;
  /** A block image's size, or a directory's disk.img size; null when there is none yet. */
  apparentBytes: bigint | null;
  diskImage: boolean;
  /** Last written: a build whose time stands still is not progressing. */
  modifiedAt: string;
  /** building: a daemon serves the pool; interrupted: none does (its next start removes the build). */
  state: 'building' | 'interrupted';
}

/**
 * The builds in a pool's tmp/ that have no record: volumes being created, restored or cloned, and
 * snapshots being taken (`@name`), read from the pool on disk. A build whose record exists already is
 * the record's (a create past its commit point); one an unreadable record may own is left out.
 */
export async function buildsInProgress(view: PoolView, mountPoints: ReadonlySet<string>): Promise<BuildInProgress[]> {
  if (!view.initialized) return [];
  const tmp = view.pool.tmpDir;
  const top = await lstatOrUndefined(tmp);
  if (!top?.isDirectory()) return [];
  const names = new Set(view.records.map((r) => r.rec.name));
  const out: BuildInProgress[] = [];
  for (const n of (await readdir(tmp)).sort()) {
    const kind = n.startsWith('@') ? 'snapshot' : 'volume';
    const name = kind === 'snapshot' ? n.slice(1) : n;
    if (kind === 'snapshot' ? view.snapshotNames.has(name) : names.has(name) || isClaimed(view, path.posix.join(TMP_DIR, n))) continue;
    const p = path.join(tmp, n);
    const st = await lstatOrUndefined(p);
    if (!st || !(st.isDirectory() || st.isFile())) continue;
    const img = st.isDirectory() ? await lstatOrUndefined(path.join(p, DISK_IMAGE)) : undefined;
    out.push({
      pool: view.name,
      kind,
      name,
      mode: st.isFile() ? 'block' : 'filesystem',
      path: p,
      allocatedBytes: (await diskUsage(p, { mountPoints })).bytes,
      apparentBytes: st.isFile() ? st.size : img?.isFile() ? img.size : null,
      diskImage: img?.isFile() === true,
      modifiedAt: new Date(Number((img?.isFile() ? img : st).mtimeMs)).toISOString(),
      state: view.daemon.held ? 'building' : 'interrupted',
    });
  }
  return out;
}
