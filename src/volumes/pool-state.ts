import type { CapacityTracker } from '../pools/capacity.js';
import type { Pool } from '../pools/pool.js';
import type { SnapshotRecord, StoredVolumeRecord } from '../format/records.js';
import { PublicationLog } from './publication-log.js';
import { snapshotStore, volumeStore, type RecordStore } from './store.js';

/** What the daemon holds for one configured pool: its stores and its capacity view (whether it is ready: PoolSupervisor). */
export interface PoolState {
  pool: Pool;
  store: RecordStore<StoredVolumeRecord>;
  pubLog: PublicationLog;
  snapStore: RecordStore<SnapshotRecord>;
  capacity: CapacityTracker;
  /** Where the pool's hostpath-provisioner volumes are (hpp-volumes.ts), once it is loaded; undefined: none. */
  hppDir?: string;
}

/** A pool not loaded yet, with the capacity tracker its owner made for it. */
export function newPoolState(pool: Pool, capacity: CapacityTracker): PoolState {
  return {
    pool,
    store: volumeStore(pool.volumesDir, pool),
    pubLog: new PublicationLog(pool.publicationLog),
    snapStore: snapshotStore(pool.snapshotRecordsDir, pool),
    capacity,
  };
}
