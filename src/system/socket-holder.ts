import { promises as fsp } from 'node:fs';
import { ProcessLock } from './flock.js';
import { flockHolders, readProcLocks } from './proc-locks.js';
import { listeningInodes, readProcNetUnix } from './proc-net-unix.js';
import { commandLine, pidsHoldingSockets } from './processes.js';
import { bindName } from './unix-socket.js';

async function listeners(sock: string): Promise<number[]> {
  const names = [sock, bindName(sock)].filter((n): n is string => n !== undefined);
  try {
    return await pidsHoldingSockets(listeningInodes(await readProcNetUnix(), names));
  } catch {
    return [];
  }
}

/** The pids flock(2)ing `file` as /proc/locks shows them: only holders in this PID namespace. */
async function lockHolders(file: string): Promise<number[]> {
  try {
    const st = await fsp.stat(file, { bigint: true });
    return flockHolders(await readProcLocks(), st).filter((pid) => pid !== process.pid);
  } catch {
    return [];
  }
}

/** Whether some process (possibly one /proc does not show) holds the lock: tried, and let go at once. */
async function lockHeld(file: string): Promise<boolean> {
  const probe = new ProcessLock(file);
  const free = await probe.acquire(false).catch(() => true);
  await probe.release();
  return !free;
}

/**
 * Who has a unix socket endpoint, in words for an error message: "pid N (command line)" of the
 * process listening on `sock`, or else of the one holding `lockFile` (pass it only when this process
 * does not hold it), or as much as can be seen.
 */
export async function describeHolder(sock: string, lockFile?: string): Promise<string> {
  let pids = await listeners(sock);
  if (pids.length === 0 && lockFile) {
    pids = await lockHolders(lockFile);
    if (pids.length === 0 && (await lockHeld(lockFile))) {
      const stamp = (await fsp.readFile(lockFile, 'utf8').catch(() => '')).trim();
      return `a process in another PID namespace${stamp ? ` (pid ${stamp} there, as ${lockFile} says)` : ''}`;
    }
  }
  if (pids.length === 0) return 'a process not visible from here (in another network or PID namespace?)';
  const named = await Promise.all(
    pids.map(async (pid) => {
      const cmd = await commandLine(pid);
      return cmd ? `pid ${pid} (${cmd})` : `pid ${pid}`;
    }),
  );
  return named.join(', ');
}
