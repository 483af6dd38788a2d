import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../observe/logger.js';
import type { DriverContext } from './context.js';
import { controllerService } from './controller.js';
import { identityService } from './identity.js';
import { hasToken, serverCredentials, type PeerTls } from './peer-auth.js';
import { shutdownGracefully } from './grpc-server.js';
import { loadCsi } from './proto.js';
import type { RpcObserver } from '../observe/rpc-observer.js';
import { bindService, type UnaryImplementation } from './rpc.js';
import type { ControllerHandlers } from './types.js';

/** The Controller calls other nodes may route here: snapshots and expansion of this node's volumes, and the look-up of a volume whose id names no node (hostpath-provisioner's). */
export const PEER_CONTROLLER_METHODS = ['ControllerGetCapabilities', 'CreateSnapshot', 'DeleteSnapshot', 'ListSnapshots', 'ControllerExpandVolume', 'ControllerGetVolume'] as const satisfies ReadonlyArray<keyof ControllerHandlers>;

function pick<T extends object, K extends keyof T>(from: T, keys: readonly K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) out[k] = from[k];
  return out;
}

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
    /** Each routed method checks the token before anything else; the others answer UNIMPLEMENTED. */
    const guard = (impl: UnaryImplementation, names: Iterable<string>): UnaryImplementation => {
      for (const name of names) {
        const inner = impl[name]!;
        impl[name] = (call, callback) => {
          if (!hasToken(call.metadata, this.token)) {
            log.warn({ method: `peer.${name}`, peer: call.getPeer() }, 'peer call without a valid token refused');
            callback({ code: grpc.status.UNAUTHENTICATED, details: 'a valid bearer token is required' });
            return;
          }
          inner(call, callback);
        };
      }
      return impl;
    };
    const routed: ControllerHandlers = pick(controller, PEER_CONTROLLER_METHODS);
    const opts = { observer, prefix: 'peer.', unimplemented: (m: string) => `${m} is not served on the peer endpoint` };
    this.server.addService(csi.Controller.service, guard(bindService(csi.Controller.service, routed, log, opts), PEER_CONTROLLER_METHODS));
    this.server.addService(csi.Identity.service, guard(bindService(csi.Identity.service, identity, log, opts), Object.keys(identity)));
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
