import { promises as fsp } from 'node:fs';

/**
 * The processes with a file descriptor on one of these socket inodes, found through /proc/<pid>/fd.
 * Processes of another PID namespace, or whose fds this user may not read, are not found.
 */
export async function pidsHoldingSockets(inodes: number[]): Promise<number[]> {
  if (inodes.length === 0) return [];
  const links = new Set(inodes.map((i) => `socket:[${i}]`));
  const pids: number[] = [];
  for (const entry of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const fds = await fsp.readdir(`/proc/${entry}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const link = await fsp.readlink(`/proc/${entry}/fd/${fd}`).catch(() => '');
      if (links.has(link)) {
        pids.push(Number(entry));
        break;
      }
    }
  }
  return pids;
}

/** /proc/<pid>/cmdline (NUL-separated) as one line, cut at `max` characters; '' when empty. */
export function formatCmdline(raw: string, max = 240): string {
  const line = raw.replace(/\0+$/, '').split('\0').join(' ');
  return line.length > max ? `${line.slice(0, max - 3)}...` : line;
}

/** The command line of a process; undefined when it is gone or not readable. */
export async function commandLine(pid: number): Promise<string | undefined> {
  const raw = await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  return raw ? formatCmdline(raw) : undefined;
}
