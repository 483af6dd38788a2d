/**
 * The keys of the daemon's KeyedLock (VolumeManager.locks), built here and nowhere else. Which CSI
 * method takes which of them, and why, is the lock table (src/csi/locks.ts); docs/node-volumes.md
 * has both.
 *
 * Lock order, which keeps the daemon deadlock-free:
 * 1. a call's request keys (volume name, snapshot name, data path, target) are taken all at once, in
 *    sorted order (KeyedLock.withKeys): one total order, so no two calls wait on each other in a cycle;
 *    no call takes request keys while it holds any key;
 * 2. `capacity/<pool>` is taken inside them (VolumeManager.create and expand), held only while the
 *    pool's figures are checked and the space reserved, and nothing is taken while it is held;
 * 3. the loop table (src/system/loop.ts, a lock of its own) is innermost: nothing is taken under it.
 */

/** A volume, by its name (names are unique across the node's pools). */
export function volumeNameKey(name: string): string {
  return `name/${name}`;
}

/** A snapshot, by its name. */
export function snapshotNameKey(name: string): string {
  return `snapname/${name}`;
}

/** Where a new volume's data goes in its pool: two names may map to one path (legacy naming prefix). */
export function dataPathKey(pool: string, data: string): string {
  return `data/${pool}/${data}`;
}

/** A publication target, by its real path (two spellings of one directory are one target). */
export function targetKey(realTarget: string): string {
  return `target/${realTarget}`;
}

/** A pool's capacity figures and reservations (see the lock order above). */
export function capacityKey(pool: string): string {
  return `capacity/${pool}`;
}
