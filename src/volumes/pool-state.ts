import { CapacityTracker } from '../pools/capacity.js';
import type { Pool } from '../pools/pool.js';
import { PublicationLog } from './publication-log.js';
import type { StoredVolumeRecord, VolumeRecord } from './record.js';
import type { SnapshotRecord } from './snapshot-record.js';
import { RecordStore } from './store.js';

/** XFS project ids handed to volumes start here, above the ids a distribution uses for itself. */
export const FIRST_PROJECT_ID = 1000;

/** What the daemon holds for one configured pool: its stores, its capacity view, whether it is loaded. */
export interface PoolState {
  pool: Pool;
  store: RecordStore<StoredVolumeRecord>;
  pubLog: PublicationLog;
  snapStore: RecordStore<SnapshotRecord>;
  capacity: CapacityTracker;
  loaded: boolean;
  /** Next XFS project id to hand out; ids only grow, so a trashed directory's id is never reused. */
  nextProjectId: number;
}

/** A pool not loaded yet; `volumesOf` lists the pool's volumes for its capacity tracker. */
export function newPoolState(pool: Pool, volumesOf: () => VolumeRecord[]): PoolState {
  return {
    pool,
    store: new RecordStore<StoredVolumeRecord>(pool.volumesDir, pool.name),
    pubLog: new PublicationLog(pool.publicationLog),
    snapStore: new RecordStore<SnapshotRecord>(pool.snapshotRecordsDir, pool.name),
    capacity: new CapacityTracker(pool, volumesOf),
    loaded: false,
    nextProjectId: FIRST_PROJECT_ID,
  };
}
