import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { promises as fsp } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** sun_path holds 108 bytes with the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

/** The path is taken (a live socket, or not a socket at all) or cannot be judged: left as it is. */
export class SocketTakenError extends Error {
  override readonly name = 'SocketTakenError';
}

/**
 * A socket file as bound by us. Inode numbers are reused at once (a socket removed and another made
 * gets the same number on ext4 and tmpfs), so the birth time goes with them.
 */
export interface OwnedSocket {
  path: string;
  dev: bigint;
  ino: bigint;
  birthtimeNs: bigint;
}

/**
 * Resolves 'absent' or 'stale' (a socket file nobody listens on: connect is refused) when the path may
 * be bound; throws SocketTakenError for a live socket, anything that is not a socket, or a path it
 * cannot judge (no answer in time, no permission): those are never replaced.
 */
export async function checkSocketPath(sock: string, timeoutMs = 1_000): Promise<'absent' | 'stale'> {
  let st: Stats;
  try {
    st = await fsp.lstat(sock);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw new SocketTakenError(`cannot look at ${sock}: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isSocket()) throw new SocketTakenError(`${sock} exists and is not a socket: not replacing it`);
  return new Promise((resolve, reject) => {
    const conn = net.connect({ path: sock });
    const done = (finish: () => void) => {
      clearTimeout(timer);
      conn.removeAllListeners();
      conn.on('error', () => {});
      conn.destroy();
      finish();
    };
    const timer = setTimeout(() => done(() => reject(new SocketTakenError(`${sock} did not answer within ${timeoutMs} ms: someone may serve it, not replacing it`))), timeoutMs);
    conn.once('connect', () => done(() => reject(new SocketTakenError(`${sock} is served by another process: not replacing it`))));
    conn.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') done(() => resolve('stale'));
      else if (err.code === 'ENOENT') done(() => resolve('absent'));
      else done(() => reject(new SocketTakenError(`cannot tell whether ${sock} is in use (${err.code ?? err.message}): not replacing it`, { cause: err })));
    });
  });
}

/**
 * Binds `server` at `sock`, replacing a stale socket file there, and returns what to remove later.
 *
 * The server is bound under a hidden name beside `sock` and hard-linked to it. libuv unlinks the name
 * it bound when the listener closes, whatever is there by then; binding under a private name means our
 * shutdown can never remove a socket another process has put at `sock` since. link(2) also fails
 * rather than replace anything that appeared at `sock` after the check. (kubelet's plugin watcher
 * ignores names starting with a dot, so it never sees the hidden one.)
 */
export async function bindOwnedSocket(server: grpc.Server, sock: string, mode = 0o600): Promise<OwnedSocket> {
  if ((await checkSocketPath(sock)) === 'stale') await fsp.rm(sock, { force: true });
  // Never longer than `sock`'s own name (at least "<2-character driver>-reg.sock"), so it fits sun_path too.
  const hidden = path.join(path.dirname(sock), `.hpp-${randomBytes(3).toString('hex')}`);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${hidden}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(new Error(`cannot bind ${hidden} (for ${sock}): ${err.message}`, { cause: err })) : resolve(),
    ),
  );
  try {
    await fsp.chmod(hidden, mode);
    await fsp.link(hidden, sock).catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'EEXIST'
        ? new SocketTakenError(`${sock} appeared while this process was binding it: not replacing it`, { cause: err })
        : new Error(`cannot link ${hidden} to ${sock}: ${err.message}`, { cause: err });
    });
  } finally {
    await fsp.rm(hidden, { force: true });
  }
  const st = await fsp.lstat(sock, { bigint: true });
  return { path: sock, dev: st.dev, ino: st.ino, birthtimeNs: st.birthtimeNs };
}

/** Is the socket at its path still the one bound here? */
export async function stillOurs(owned: OwnedSocket): Promise<'ours' | 'gone' | 'replaced'> {
  const st = await fsp.lstat(owned.path, { bigint: true }).catch(() => undefined);
  if (!st) return 'gone';
  return st.isSocket() && st.dev === owned.dev && st.ino === owned.ino && st.birthtimeNs === owned.birthtimeNs ? 'ours' : 'replaced';
}

/** Removes the socket file if it is still the one bound here; someone else's is left alone. */
export async function removeIfOurs(owned: OwnedSocket): Promise<void> {
  if ((await stillOurs(owned)) === 'ours') await fsp.rm(owned.path, { force: true });
}
