import * as grpc from '@grpc/grpc-js';

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
