import * as grpc from '@grpc/grpc-js';
import path from 'node:path';

/** Where a `unix:///abs/path` (or plain absolute path) endpoint puts its socket. */
export function socketPath(endpoint: string): string {
  const p = endpoint.startsWith('unix://') ? endpoint.slice('unix://'.length) : endpoint;
  if (!path.isAbsolute(p)) throw new Error(`endpoint ${endpoint} must be unix:///absolute/path`);
  return p;
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
