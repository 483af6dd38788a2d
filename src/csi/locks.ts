import { dataPathKey, snapshotNameKey, targetKey, volumeNameKey } from '../volumes/lock-keys.js';
import type { KeyedLock } from '../util/keyed-lock.js';
import type { CallContext } from '../observe/call-context.js';
import type { Handler } from './rpc.js';

/**
 * What each locked CSI method's keys are built from: what its check found in the request. Volume and
 * snapshot names, a new volume's pool and data path (relative to the pool), a target's real path.
 */
export interface LockSubjects {
  CreateVolume: { volume: string; pool: string; data: string; source?: string };
  DeleteVolume: { volume: string };
  CreateSnapshot: { snapshot: string; source?: string };
  DeleteSnapshot: { snapshot: string };
  ControllerExpandVolume: { volume: string };
  NodePublishVolume: { volume: string; target: string };
  NodeUnpublishVolume: { volume: string; target: string };
  NodeExpandVolume: { volume: string };
}

export type LockedMethod = keyof LockSubjects;

export interface LockEntry<S> {
  keys(subject: S): string[];
  /** Why these keys: what would go wrong without them. */
  why: string;
}

/**
 * The lock table: the keys (src/volumes/lock-keys.ts) each CSI method that changes anything takes
 * for its work, all at once in sorted order. The methods not here only read (ListVolumes, GetCapacity,
 * NodeGetVolumeStats, ...). Inside CreateVolume and ControllerExpandVolume, VolumeManager takes
 * `capacity/<pool>` too, so that two of them never both take a pool's last free space; see
 * lock-keys.ts for the lock order.
 */
export const LOCK_TABLE: { readonly [M in LockedMethod]: LockEntry<LockSubjects[M]> } = {
  CreateVolume: {
    keys: (s) => [volumeNameKey(s.volume), dataPathKey(s.pool, s.data), ...(s.source === undefined ? [] : [volumeNameKey(s.source), snapshotNameKey(s.source)])],
    why:
      'one name is one volume: concurrent creates of a name collapse into one (the later ones find its record) and a create never overlaps a delete of it; ' +
      'the data path, because two names may map to one directory (legacy naming prefix); the source, by its name as a volume and as a snapshot ' +
      '(whichever it is), so that it is not deleted or grown while it is copied',
  },
  DeleteVolume: {
    keys: (s) => [volumeNameKey(s.volume)],
    why: 'never while the volume is created, published, unpublished, expanded, snapshotted or copied from: its data goes to the trash',
  },
  CreateSnapshot: {
    keys: (s) => [snapshotNameKey(s.snapshot), ...(s.source === undefined ? [] : [volumeNameKey(s.source)])],
    why: 'one name is one snapshot (concurrent creates collapse into one); the source volume (when it exists) is not deleted, grown or published while it is copied',
  },
  DeleteSnapshot: {
    keys: (s) => [snapshotNameKey(s.snapshot)],
    why: 'never while the snapshot is created or a volume is restored from it',
  },
  ControllerExpandVolume: {
    keys: (s) => [volumeNameKey(s.volume)],
    why: 'the image or quota limit and then the record are grown as one step, never beside a delete, a snapshot or another expansion of the volume',
  },
  NodePublishVolume: {
    keys: (s) => [volumeNameKey(s.volume), targetKey(s.target)],
    why:
      "the volume's publications are read, checked (single writer) and written back: one change of them at a time; the target (by its real path), " +
      'because "is it free" and the mount onto it are one step, whichever volume is published there',
  },
  NodeUnpublishVolume: {
    keys: (s) => [volumeNameKey(s.volume), targetKey(s.target)],
    why: "as NodePublishVolume: the volume's publications change, and what is mounted at the target is looked at, then taken off",
  },
  NodeExpandVolume: {
    keys: (s) => [volumeNameKey(s.volume)],
    why: 'the loop devices are refreshed or disk.img grown from the recorded capacity, never beside ControllerExpandVolume changing it or a delete',
  },
};

/** A check's answer that needs no lock and no work (a delete of an id that names nothing here). */
export class Answer<Res> {
  constructor(readonly response: Res) {}
}

/**
 * A locked method in two steps: `check` validates the request and finds what it names, changing
 * nothing but the call's log fields, before any lock is taken (a bad request is refused at once, not
 * after a wait); `run` does the work with the table's keys held, finding the volume again (it may have
 * changed meanwhile).
 */
export interface LockedSteps<Req, S, Res> {
  check(req: Req, cx: CallContext): Promise<S | Answer<Res>>;
  run(subject: S, cx: CallContext): Promise<Res>;
}

const LOCKED_AS = Symbol('locked as');

/** The handler of `method`, run under the keys the lock table gives it; `locks` is asked for the daemon's KeyedLock at each call. */
export function locked<M extends LockedMethod, Req, S extends LockSubjects[M], Res>(method: M, locks: () => KeyedLock, steps: LockedSteps<Req, S, Res>): Handler<Req, Res> {
  const entry = LOCK_TABLE[method] as LockEntry<LockSubjects[M]>;
  const handler: Handler<Req, Res> = async (req, cx) => {
    const checked = await steps.check(req, cx);
    if (checked instanceof Answer) return checked.response;
    return locks().withKeys(entry.keys(checked), () => steps.run(checked, cx));
  };
  return Object.assign(handler, { [LOCKED_AS]: method });
}

/** The lock table entry a handler was made with by locked(), if any. */
export function lockedAs(handler: unknown): LockedMethod | undefined {
  return typeof handler === 'function' ? (handler as { [LOCKED_AS]?: LockedMethod })[LOCKED_AS] : undefined;
}
