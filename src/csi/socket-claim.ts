import * as grpc from '@grpc/grpc-js';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ProcessLock } from '../system/flock.js';
import { describeHolder } from '../system/socket-holder.js';
import { bindName, probeUnixSocket } from '../system/unix-socket.js';
import { socketPath } from '../config/endpoint.js';

/** The endpoint is someone else's, or its path is not ours to remove: a refusal to start, not a crash. */
export class EndpointTakenError extends Error {
  override readonly name = 'EndpointTakenError';
}

const NOT_STARTING = 'not starting a second server on it (nothing was changed)';

/**
 * This process's sole use of a unix socket endpoint, from before start-up changes anything until exit.
 *
 * A socket file at the path is replaced only when stale (a connect is refused: nobody listens). A live
 * socket, a path that is not a socket, or one we cannot tell about is an EndpointTakenError. Two
 * processes starting at once would both see "stale" and both bind: `<socket>.lock`, flocked from take()
 * to release(), lets only one through. On release the socket is removed only if it is still ours.
 */
export class SocketClaim {
  private bound?: { dev: number; ino: number };

  private constructor(
    readonly endpoint: string,
    readonly path: string,
    private readonly lock: ProcessLock,
  ) {}

  static async take(endpoint: string): Promise<SocketClaim> {
    const sock = socketPath(endpoint);
    const lockFile = `${sock}.lock`;
    // Looking first: a refusal then leaves everything as it was, not even creating the lock file.
    await usable(endpoint, sock, lockFile);
    await fsp.mkdir(path.dirname(sock), { recursive: true });
    const lock = new ProcessLock(lockFile);
    if (!(await lock.acquire())) {
      // Nothing listens, yet: the holder is still starting, or already withdrew its socket and is draining.
      throw new EndpointTakenError(`${endpoint} belongs to ${await describeHolder(sock, lockFile)}, which holds ${lockFile} (starting up or shutting down): ${NOT_STARTING}`);
    }
    try {
      await usable(endpoint, sock);
    } catch (err) {
      await lock.release();
      throw err;
    }
    return new SocketClaim(endpoint, sock, lock);
  }

  /** Replaces a stale socket file, binds `server` and puts its socket at the path. */
  async bind(server: grpc.Server): Promise<void> {
    // Looked at again: something that ignores our lock may have come since take().
    if ((await usable(this.endpoint, this.path)) === 'stale') await fsp.rm(this.path, { force: true });
    const name = bindName(this.path);
    // A name left by a daemon killed between its bind and its link; ours while we hold the lock.
    if (name) await fsp.rm(name, { force: true });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${name ?? this.path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    if (name) {
      // link(2), not rename(2): it fails rather than replace whatever may have appeared at the path.
      try {
        await fsp.link(name, this.path);
      } finally {
        await fsp.rm(name, { force: true });
      }
    }
    const st = await fsp.lstat(this.path);
    this.bound = { dev: st.dev, ino: st.ino };
  }

  /** Removes the socket file, so that no new connection comes in, if it is still the one bound here. */
  async withdraw(): Promise<void> {
    const bound = this.bound;
    this.bound = undefined;
    if (!bound) return;
    const st = await fsp.lstat(this.path).catch(() => undefined);
    if (st?.isSocket() && st.dev === bound.dev && st.ino === bound.ino) await fsp.rm(this.path, { force: true });
  }

  /** withdraw(), then lets go of the endpoint: call once the server is shut down. */
  async release(): Promise<void> {
    await this.withdraw();
    await this.lock.release();
  }
}

/**
 * Resolves when the path is free or holds a stale socket; throws EndpointTakenError otherwise. `lockFile`
 * helps name who has a live socket: pass it only when this process does not hold it.
 */
async function usable(endpoint: string, sock: string, lockFile?: string): Promise<'absent' | 'stale'> {
  const s = await probeUnixSocket(sock);
  switch (s.state) {
    case 'absent':
    case 'stale':
      return s.state;
    case 'live':
      throw new EndpointTakenError(`${endpoint} is served by ${await describeHolder(sock, lockFile)}: ${NOT_STARTING}`);
    case 'not-socket':
      throw new EndpointTakenError(`${sock} is ${s.what}, not a socket: not starting, and not removing it`);
    case 'unknown':
      throw new EndpointTakenError(`cannot tell whether ${endpoint} is in use (${s.cause.message}): not starting, and not replacing ${sock}`, { cause: s.cause });
  }
}
