import { CapacityTracker } from '../pools/capacity.js';
import type { Pool } from '../pools/pool.js';
import { PublicationLog } from './publication-log.js';
import type { StoredVolumeRecord, VolumeRecord } from './record.js';
import type { SnapshotRecord } from './snapshot-record.js';
import { RecordStore } from './store.js';

/** What the daemon holds for one configured pool: its stores, its capacity view, whether it is loaded. */
export interface PoolState {
  pool: Pool;
  store: RecordStore<StoredVolumeRecord>;
  pubLog: PublicationLog;
  snapStore: RecordStore<SnapshotRecord>;
  capacity: CapacityTracker;
  loaded: boolean;
}

/** A pool not loaded yet; `volumesOf` lists the pool's volumes for its capacity tracker. */
export function newPoolState(pool: Pool, volumesOf: () => VolumeRecord[], onCapacityError?: (err: unknown) => void): PoolState {
  return {
    pool,
    store: new RecordStore<StoredVolumeRecord>(pool.volumesDir, pool.name),
    pubLog: new PublicationLog(pool.publicationLog),
    snapStore: new RecordStore<SnapshotRecord>(pool.snapshotRecordsDir, pool.name),
    capacity: new CapacityTracker(pool, volumesOf, onCapacityError),
    loaded: false,
  };
}
