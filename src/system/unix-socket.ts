import type { Stats } from 'node:fs';
import { promises as fsp } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** What is at a unix socket path, by looking and connecting (nothing is changed). */
export type SocketState =
  | { state: 'absent' }
  | { state: 'not-socket'; what: string }
  /** Something accepted the connection. */
  | { state: 'live' }
  /** A socket file nobody listens on (ECONNREFUSED): left by a process that died. */
  | { state: 'stale' }
  /** Neither: a timeout, EAGAIN (backlog full), EACCES... Someone may be there. */
  | { state: 'unknown'; cause: Error };

function describeType(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isBlockDevice() || st.isCharacterDevice()) return 'a device node';
  return 'of another kind';
}

/** Connects and hangs up at once: no request is sent, so a gRPC server logs and counts nothing. */
export async function probeUnixSocket(sock: string, timeoutMs = 1_000): Promise<SocketState> {
  let st: Stats;
  try {
    st = await fsp.lstat(sock);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return e.code === 'ENOENT' ? { state: 'absent' } : { state: 'unknown', cause: e };
  }
  if (!st.isSocket()) return { state: 'not-socket', what: describeType(st) };
  return new Promise((resolve) => {
    const conn = net.connect({ path: sock });
    const done = (s: SocketState) => {
      clearTimeout(timer);
      conn.removeAllListeners();
      conn.on('error', () => {});
      conn.destroy();
      resolve(s);
    };
    const timer = setTimeout(() => done({ state: 'unknown', cause: new Error(`no answer within ${timeoutMs} ms`) }), timeoutMs);
    conn.once('connect', () => done({ state: 'live' }));
    conn.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') done({ state: 'stale' });
      else if (err.code === 'ENOENT') done({ state: 'absent' });
      else done({ state: 'unknown', cause: err });
    });
  });
}

/** sun_path holds 108 bytes with the terminating NUL. */
export const MAX_SOCKET_PATH = 107;

/**
 * The name a socket is bound under before it is hard-linked to its real path. libuv unlinks the bound
 * name when the listener closes, whatever is there by then; binding under this private name means it
 * can never remove a socket another process has since put at the real path. undefined when the name
 * would be too long for sun_path (the socket is then bound at its real path).
 */
export function bindName(sock: string): string | undefined {
  const name = path.join(path.dirname(sock), `.${path.basename(sock)}.bind`);
  return Buffer.byteLength(name) <= MAX_SOCKET_PATH ? name : undefined;
}
