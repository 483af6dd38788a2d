import { promises as fsp } from 'node:fs';

/** One row of /proc/net/unix: a unix socket of this network namespace. */
export interface UnixSocketEntry {
  /** The socket's inode in sockfs: what /proc/<pid>/fd/N links to as `socket:[inode]`. */
  inode: number;
  /** listen() was called on it (__SO_ACCEPTCON). */
  listening: boolean;
  /** The address it is bound to, as given to bind(); `@...` for an abstract one; absent when unbound. */
  path?: string;
}

const SO_ACCEPTCON = 0x10000;
// Num: RefCount Protocol Flags Type St Inode [Path]; the path is everything after one space.
const ROW = /^\s*[0-9a-f]+:\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+[0-9a-f]+\s+[0-9a-f]+\s+(\d+)(?: (.*))?$/i;

export function parseProcNetUnix(text: string): UnixSocketEntry[] {
  const out: UnixSocketEntry[] = [];
  for (const line of text.split('\n')) {
    const m = ROW.exec(line);
    if (!m) continue;
    const entry: UnixSocketEntry = { inode: Number(m[2]), listening: (parseInt(m[1]!, 16) & SO_ACCEPTCON) !== 0 };
    if (m[3]) entry.path = m[3];
    out.push(entry);
  }
  return out;
}

/** Inodes of the sockets listening under any of `paths`. Accepted connections carry the path too. */
export function listeningInodes(entries: UnixSocketEntry[], paths: string[]): number[] {
  return entries.filter((e) => e.listening && e.path !== undefined && paths.includes(e.path)).map((e) => e.inode);
}

export async function readProcNetUnix(): Promise<UnixSocketEntry[]> {
  return parseProcNetUnix(await fsp.readFile('/proc/net/unix', 'utf8'));
}
