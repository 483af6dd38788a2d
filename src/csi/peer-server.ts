import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../observe/logger.js';
import type { DriverContext } from './context.js';
import { controllerService } from './controller.js';
import { identityService } from './identity.js';
import { hasToken, serverCredentials, type PeerTls } from './peer-auth.js';
import { shutdownGracefully } from './grpc-server.js';
import { loadCsi } from './proto.js';
import type { RpcObserver } from '../observe/rpc-observer.js';
import { unary, type Handler } from './rpc.js';

/** The Controller calls other nodes may route here: snapshots and expansion of this node's volumes. */
export const PEER_CONTROLLER_METHODS = ['ControllerGetCapabilities', 'CreateSnapshot', 'DeleteSnapshot', 'ListSnapshots', 'ControllerExpandVolume'] as const;

/**
 * The daemon's TCP endpoint for the routing controller. Every call must carry the shared bearer token
 * (UNAUTHENTICATED otherwise, before any work), optionally over TLS; only the routed methods exist.
 */
export class PeerServer {
  private readonly server = new grpc.Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024 });

  constructor(
    ctx: DriverContext,
    private readonly log: Logger,
    private readonly token: string,
    private readonly tls?: PeerTls,
    observer?: RpcObserver,
  ) {
    const csi = loadCsi();
    const controller = controllerService(ctx);
    const identity = identityService(ctx);
    const guarded = (name: string, h: Handler): grpc.handleUnaryCall<Record<string, unknown>, Record<string, unknown>> => {
      const inner = unary(`peer.${name}`, h, log, observer);
      return (call, callback) => {
        if (!hasToken(call.metadata, this.token)) {
          log.warn({ method: `peer.${name}`, peer: call.getPeer() }, 'peer call without a valid token refused');
          callback({ code: grpc.status.UNAUTHENTICATED, details: 'a valid bearer token is required' });
          return;
        }
        inner(call, callback);
      };
    };
    const ctl: grpc.UntypedServiceImplementation = {};
    for (const m of PEER_CONTROLLER_METHODS) ctl[m] = guarded(m, controller[m]!);
    const idt: grpc.UntypedServiceImplementation = {};
    for (const [m, h] of Object.entries(identity)) idt[m] = guarded(m, h);
    this.server.addService(csi.Controller.service, ctl);
    this.server.addService(csi.Identity.service, idt);
  }

  /** Binds `host:port` (port 0 picks one); returns the port. */
  async listen(address: string): Promise<number> {
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(address, serverCredentials(this.tls), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.log.info({ address, port, tls: this.tls !== undefined }, 'serving peer endpoint');
    return port;
  }

  async close(graceMs = 10_000): Promise<void> {
    await shutdownGracefully(this.server, graceMs);
  }
}
