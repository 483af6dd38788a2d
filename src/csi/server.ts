import * as grpc from '@grpc/grpc-js';
import { promises as fsp } from 'node:fs';
import type { Logger } from '../observe/logger.js';
import type { DriverContext } from './context.js';
import { controllerService } from './controller.js';
import { identityService } from './identity.js';
import { nodeService } from './node.js';
import { loadCsi } from './proto.js';
import { bindService, type RpcObserver } from './rpc.js';
import { bindUnixSocket, shutdownGracefully } from './grpc-server.js';


export class CsiServer {
  private readonly server = new grpc.Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024, 'grpc.enable_channelz': 0 });
  private sock?: string;
  private closing?: Promise<void>;

  constructor(ctx: DriverContext, log: Logger, observer?: RpcObserver) {
    const csi = loadCsi();
    this.server.addService(csi.Identity.service, bindService(identityService(ctx), log, observer));
    this.server.addService(csi.Controller.service, bindService(controllerService(ctx), log, observer));
    this.server.addService(csi.Node.service, bindService(nodeService(ctx), log, observer));
  }

  /** Binds the unix socket, replacing a stale socket file left by a previous run. */
  async listen(endpoint: string): Promise<void> {
    this.sock = await bindUnixSocket(this.server, endpoint);
  }

  /** The socket file while the server takes calls (bound and not closing); undefined otherwise. */
  get servingSocket(): string | undefined {
    return this.closing ? undefined : this.sock;
  }

  /** Stops taking calls, lets in-flight ones finish (up to graceMs), removes the socket. Idempotent. */
  close(graceMs = 10_000): Promise<void> {
    this.closing ??= this.shutdown(graceMs);
    return this.closing;
  }

  private async shutdown(graceMs: number): Promise<void> {
    await shutdownGracefully(this.server, graceMs);
    if (this.sock) await fsp.rm(this.sock, { force: true });
  }
}
