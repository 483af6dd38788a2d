import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../observe/logger.js';
import type { DriverContext } from './context.js';
import { controllerService } from './controller.js';
import { identityService } from './identity.js';
import { nodeService } from './node.js';
import { loadCsi } from './proto.js';
import type { RpcObserver } from '../observe/rpc-observer.js';
import { bindService } from './rpc.js';
import { shutdownGracefully } from './grpc-server.js';
import { SocketClaim } from './socket-claim.js';

export class CsiServer {
  private readonly server = new grpc.Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024, 'grpc.enable_channelz': 0 });
  private claimed?: SocketClaim;
  private sock?: string;
  private closing?: Promise<void>;

  constructor(ctx: DriverContext, log: Logger, observer?: RpcObserver) {
    const csi = loadCsi();
    this.server.addService(csi.Identity.service, bindService(csi.Identity.service, identityService(ctx), log, { observer }));
    this.server.addService(csi.Controller.service, bindService(csi.Controller.service, controllerService(ctx), log, { observer }));
    this.server.addService(csi.Node.service, bindService(csi.Node.service, nodeService(ctx), log, { observer }));
  }

  /**
   * Takes the endpoint for this process (see SocketClaim) before anything else starts: an
   * EndpointTakenError, with nothing changed, when another process serves or is starting on it.
   */
  async claim(endpoint: string): Promise<void> {
    this.claimed ??= await SocketClaim.take(endpoint);
  }

  /** Binds the claimed socket, replacing a stale socket file left by a previous run. */
  async listen(): Promise<void> {
    if (!this.claimed) throw new Error('CsiServer.listen() before claim()');
    await this.claimed.bind(this.server);
    this.sock = this.claimed.path;
  }

  /** The socket file while the server takes calls (bound and not closing); undefined otherwise. */
  get servingSocket(): string | undefined {
    return this.closing ? undefined : this.sock;
  }

  /**
   * Removes the socket (if still ours) and stops taking calls, lets in-flight ones finish (up to
   * graceMs), then lets go of the endpoint. Idempotent.
   */
  close(graceMs = 10_000): Promise<void> {
    this.closing ??= this.shutdown(graceMs);
    return this.closing;
  }

  private async shutdown(graceMs: number): Promise<void> {
    await this.claimed?.withdraw();
    await shutdownGracefully(this.server, graceMs);
    await this.claimed?.release();
  }
}
