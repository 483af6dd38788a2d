import * as grpc from '@grpc/grpc-js';
import type { Stats } from 'node:fs';
import { promises as fsp } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { bindName } from '../../config/socket-names.js';
import { MAX_SOCKET_PATH } from '../../system/unix-socket.js';

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
 * Binds `server` at `sock` (through bindName(sock)), replacing stale socket files left by a kill -9,
 * and returns what to remove later. link(2) fails rather than replace anything that appeared at `sock`
 * since the check.
 */
export async function bindOwnedSocket(server: grpc.Server, sock: string, mode = 0o600): Promise<OwnedSocket> {
  const name = bindName(sock);
  if ((await checkSocketPath(sock)) === 'stale') await fsp.rm(sock, { force: true });
  // Live, the bind name would be another process starting on this socket.
  if ((await checkSocketPath(name)) === 'stale') await fsp.rm(name, { force: true });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${name}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(new Error(`cannot bind ${name} (for ${sock}): ${err.message}`, { cause: err })) : resolve(),
    ),
  );
  await fsp.chmod(name, mode);
  await fsp.link(name, sock).catch((err: NodeJS.ErrnoException) => {
    throw err.code === 'EEXIST'
      ? new SocketTakenError(`${sock} appeared while this process was binding it: not replacing it`, { cause: err })
      : new Error(`cannot link ${name} to ${sock}: ${err.message}`, { cause: err });
  });
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
