import { existsSync, promises as fsp } from 'node:fs';
import { ProcessLock } from '../system/flock.js';
import { devString } from '../system/loop.js';

export interface ProcLock {
  type: string;
  pid: number;
  major: number;
  minor: number;
  inode: bigint;
  /** A waiter (`->` line), not a holder. */
  waiting: boolean;
}

/** Parse /proc/locks: "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (major and minor in hex). */
export function parseProcLocks(text: string): ProcLock[] {
  const out: ProcLock[] = [];
  for (const line of text.split('\n')) {
    const m = /^\d+:\s+(->\s+)?(\S+)\s+\S+\s+\S+\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/.exec(line);
    if (!m) continue;
    out.push({ type: m[2]!, pid: Number(m[3]), major: parseInt(m[4]!, 16), minor: parseInt(m[5]!, 16), inode: BigInt(m[6]!), waiting: m[1] !== undefined });
  }
  return out;
}

export type LockState = { held: false } | { held: true; pid: string };

/**
 * Is a daemon holding the pool's flock (`<pool>/.hpp/daemon.lock`)? Read from /proc/locks without
 * touching the lock, so looking never gets in the way of a daemon starting. /proc/locks names the
 * filesystem by its superblock device, which btrfs does not report in stat(2); when only the inode
 * matches, or /proc/locks is unreadable, the lock is probed (taken and let go at once).
 */
export async function daemonLockState(lockFile: string): Promise<LockState> {
  let st;
  try {
    st = await fsp.lstat(lockFile, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { held: false };
    throw err;
  }
  if (!st.isFile()) return { held: false };
  const lock = new ProcessLock(lockFile);
  const stamped = async () => lock.holder();
  let locks: ProcLock[] | undefined;
  try {
    locks = parseProcLocks(await fsp.readFile('/proc/locks', 'utf8'));
  } catch {
    locks = undefined;
  }
  if (locks) {
    const dev = devString(st.dev);
    const same = locks.filter((l) => l.type === 'FLOCK' && !l.waiting && l.inode === st.ino);
    if (same.length === 0) return { held: false };
    const exact = same.find((l) => `${l.major}:${l.minor}` === dev);
    // A lock taken by flock(1) for a daemon without fs-ext (src/system/flock.ts) names flock(1)'s pid,
    // gone since: the daemon's own is the one stamped in the file.
    if (exact) return { held: true, pid: exact.pid > 0 && existsSync(`/proc/${exact.pid}`) ? String(exact.pid) : await stamped() };
  }
  // Inode-only match (btrfs) or no /proc/locks: ask the kernel by trying the lock.
  if (await lock.acquire(false)) {
    await lock.release();
    return { held: false };
  }
  return { held: true, pid: await stamped() };
}

/**
 * The pool's daemon lock, taken by gc for the duration of its work so that no daemon starts on the
 * pool meanwhile (a starting daemon sees the pool busy and retries). Stamped with our pid, as a daemon
 * stamps it with its own.
 */
export async function takeDaemonLock(lockFile: string): Promise<ProcessLock | undefined> {
  const lock = new ProcessLock(lockFile);
  return (await lock.acquire(true)) ? lock : undefined;
}
