import * as grpc from '@grpc/grpc-js';
import { promises as fsp } from 'node:fs';
import path from 'node:path';

/** Where a `unix:///abs/path` (or plain absolute path) endpoint puts its socket. */
export function socketPath(endpoint: string): string {
  const p = endpoint.startsWith('unix://') ? endpoint.slice('unix://'.length) : endpoint;
  if (!path.isAbsolute(p)) throw new Error(`endpoint ${endpoint} must be unix:///absolute/path`);
  return p;
}

/** Binds a unix socket endpoint, replacing a stale socket file left by a previous run; returns its path. */
export async function bindUnixSocket(server: grpc.Server, endpoint: string): Promise<string> {
  const sock = socketPath(endpoint);
  await fsp.mkdir(path.dirname(sock), { recursive: true });
  const st = await fsp.lstat(sock).catch(() => undefined);
  if (st) {
    if (!st.isSocket()) throw new Error(`${sock} exists and is not a socket; refusing to remove it`);
    await fsp.unlink(sock);
  }
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  return sock;
}

/** Stops taking calls and lets in-flight ones finish, cutting them off after `graceMs`. */
export async function shutdownGracefully(server: grpc.Server, graceMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
