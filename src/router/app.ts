import * as grpc from '@grpc/grpc-js';
import { loadCsi } from '../csi/proto.js';
import { bindService } from '../csi/rpc.js';
import { shutdownGracefully } from '../csi/grpc-server.js';
import { SocketClaim } from '../csi/socket-claim.js';
import type { Logger } from '../observe/logger.js';
import { NOT_ROUTED, routerServices, type RouterOptions } from './service.js';

/** The routing controller process: Identity + the routed Controller calls on a unix socket. */
export class RouterApp {
  private readonly server = new grpc.Server();
  private readonly services: ReturnType<typeof routerServices>;
  private claim?: SocketClaim;

  constructor(
    private readonly opts: RouterOptions & { endpoint: string },
    private readonly log: Logger,
  ) {
    const csi = loadCsi();
    this.services = routerServices(opts);
    const rpcLog = log.child({ component: 'csi' });
    this.server.addService(csi.Identity.service, bindService(csi.Identity.service, this.services.identity, rpcLog));
    this.server.addService(csi.Controller.service, bindService(csi.Controller.service, this.services.controller, rpcLog, { unimplemented: NOT_ROUTED }));
  }

  /** An EndpointTakenError, with nothing changed, when another process serves or is starting on the endpoint. */
  async start(): Promise<void> {
    this.claim = await SocketClaim.take(this.opts.endpoint);
    await this.claim.bind(this.server);
    this.log.info({ endpoint: this.opts.endpoint, driver: this.opts.driverName }, 'serving snapshot router');
  }

  async stop(): Promise<void> {
    await this.claim?.withdraw();
    await shutdownGracefully(this.server, 10_000);
    this.services.close();
    await this.claim?.release();
  }
}
