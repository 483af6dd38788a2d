import { PARAM_PREALLOCATION } from './parameters.js';

/** What the daemon keeps about one volume, in `<pool>/.hpp/volumes/<name>.json`. */
export type VolumeMode = 'filesystem' | 'block';

export interface Publication {
  readOnly: boolean;
  accessMode: string;
  mountFlags: string[];
  /** Block volumes: the loop device bound onto the target. */
  device?: string;
}

export interface VolumeRecord {
  version: 1;
  id: string;
  name: string;
  pool: string;
  node: string;
  mode: VolumeMode;
  /** Where the data is, relative to the pool root: the directory of a filesystem volume, the image file of a block volume. */
  data: string;
  /** Decimal string: JSON has no 64-bit integers. 0 means "no size requested". */
  capacityBytes: string;
  parameters: Record<string, string>;
  /** How the data was allocated: sparse ('none'), fallocate(2), or written with zeros ('full'). */
  preallocation?: 'none' | 'fallocate' | 'full';
  /** Present when the volume holds a KubeVirt disk.img; the overhead its size was computed with. */
  diskImage?: { overhead: string };
  /** The snapshot or volume this one was filled from, and how the data was copied. */
  contentSource?: { kind: 'snapshot' | 'volume'; id: string; method: 'reflink' | 'copy' };
  /** XFS project id limiting a filesystem volume, when the pool enforces sizes with project quotas. */
  projectId?: number;
  createdAt: string;
  state: 'ready' | 'deleting';
  /** Target paths this volume is published at on this node (kept in their own file, see publication-store.ts). */
  publications: Record<string, Publication>;
}

/**
 * A volume record as stored in `<pool>/.hpp/volumes/<name>.json`: without its publications, which
 * have their own file. Records written by versions before that still carry them, and are moved over
 * when a pool is loaded.
 */
export type StoredVolumeRecord = Omit<VolumeRecord, 'publications'> & { publications?: Record<string, Publication> };

/** The record without its publications, as it is written. */
export function toStored(rec: VolumeRecord): StoredVolumeRecord {
  const { publications, ...stored } = rec;
  void publications;
  return stored;
}

/** Whether growth of the volume is allocated up front: it was preallocated, or its parameters ask for it. */
export function wantsPreallocation(rec: Pick<VolumeRecord, 'preallocation' | 'parameters'>): boolean {
  return (rec.preallocation !== undefined && rec.preallocation !== 'none') || rec.parameters[PARAM_PREALLOCATION] === 'true';
}
