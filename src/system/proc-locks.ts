import { promises as fsp } from 'node:fs';

/** One lock of /proc/locks. */
export interface LockEntry {
  /** FLOCK, POSIX, OFDLCK, LEASE... */
  type: string;
  /** A waiter (`->`), not a holder. */
  waiting: boolean;
  /** In the reader's PID namespace; 0 when the holder is not visible there (-1 for OFD locks). */
  pid: number;
  major: number;
  minor: number;
  inode: number;
}

// "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF", or "1: -> FLOCK ..." for a waiter.
const ROW = /^\d+:\s+(->\s+)?(\S+)\s+\S+\s+\S+\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/i;

export function parseProcLocks(text: string): LockEntry[] {
  const out: LockEntry[] = [];
  for (const line of text.split('\n')) {
    const m = ROW.exec(line);
    if (!m) continue;
    out.push({ type: m[2]!, waiting: m[1] !== undefined, pid: Number(m[3]), major: parseInt(m[4]!, 16), minor: parseInt(m[5]!, 16), inode: Number(m[6]) });
  }
  return out;
}

/** A stat() device number (glibc's makedev encoding) as the kernel's major and minor. */
export function splitDev(dev: bigint): { major: number; minor: number } {
  return {
    major: Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn)),
    minor: Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn)),
  };
}

/** The pids holding a flock(2) on the file with this device and inode; 0 for a holder not visible here. */
export function flockHolders(entries: LockEntry[], file: { dev: bigint; ino: bigint }): number[] {
  const { major, minor } = splitDev(file.dev);
  return entries
    .filter((e) => e.type === 'FLOCK' && !e.waiting && e.major === major && e.minor === minor && BigInt(e.inode) === file.ino)
    .map((e) => e.pid);
}

export async function readProcLocks(): Promise<LockEntry[]> {
  return parseProcLocks(await fsp.readFile('/proc/locks', 'utf8'));
}
