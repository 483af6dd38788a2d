import type { CapacityTracker } from '../pools/capacity.js';
import type { Pool } from '../pools/pool.js';
import { PublicationLog } from './publication-log.js';
import type { StoredVolumeRecord } from './record.js';
import type { SnapshotRecord } from './snapshot-record.js';
import { RecordStore } from './store.js';

/** What the daemon holds for one configured pool: its stores and its capacity view (whether it is ready: PoolSupervisor). */
export interface PoolState {
  pool: Pool;
  store: RecordStore<StoredVolumeRecord>;
  pubLog: PublicationLog;
  snapStore: RecordStore<SnapshotRecord>;
  capacity: CapacityTracker;
}

/** A pool not loaded yet, with the capacity tracker its owner made for it. */
export function newPoolState(pool: Pool, capacity: CapacityTracker): PoolState {
  return {
    pool,
    store: new RecordStore<StoredVolumeRecord>(pool.volumesDir, pool.name),
    pubLog: new PublicationLog(pool.publicationLog),
    snapStore: new RecordStore<SnapshotRecord>(pool.snapshotRecordsDir, pool.name),
    capacity,
  };
}
