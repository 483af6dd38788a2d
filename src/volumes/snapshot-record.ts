import path from 'node:path';
import type { CopyMethod } from '../system/copy.js';
import type { VolumeMode } from './record.js';

/** What the daemon keeps about one snapshot, in `<pool>/.hpp/snapshot-records/<name>.json`. */
export interface SnapshotRecord {
  version: 1;
  /** `<node>:<pool>:<name>`, like volume ids (snapshots and volumes are looked up in separate tables). */
  id: string;
  name: string;
  pool: string;
  node: string;
  sourceVolumeId: string;
  mode: VolumeMode;
  /** Where the data is, relative to the pool root: `.hpp/snapshots/<name>`. */
  data: string;
  /** The source's capacity: the smallest volume the snapshot can be restored into. */
  sizeBytes: string;
  createdAt: string;
  method: CopyMethod;
  /** Copied from the source so a restored volume knows it holds a disk.img. */
  diskImage?: { overhead: string };
  state: 'ready' | 'deleting';
}

/** Where snapshot data lives, relative to the pool root. */
export const SNAPSHOTS_DIR = '.hpp/snapshots';

/** The `data` of a snapshot record: `.hpp/snapshots/<name>`. */
export function snapshotDataDir(name: string): string {
  return path.posix.join(SNAPSHOTS_DIR, name);
}

/** Snapshots are built in tmp/ under a name no volume can have ('@' is not allowed in names). */
export function snapshotBuildName(name: string): string {
  return `@${name}`;
}
