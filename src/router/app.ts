import * as grpc from '@grpc/grpc-js';
import { promises as fsp } from 'node:fs';
import { loadCsi } from '../csi/proto.js';
import { bindService } from '../csi/rpc.js';
import { bindUnixSocket, shutdownGracefully } from '../csi/grpc-server.js';
import type { Logger } from '../observe/logger.js';
import { routerServices, type RouterOptions } from './service.js';

/** The routing controller process: Identity + the routed Controller calls on a unix socket. */
export class RouterApp {
  private readonly server = new grpc.Server();
  private readonly services: ReturnType<typeof routerServices>;
  private sock?: string;

  constructor(
    private readonly opts: RouterOptions & { endpoint: string },
    private readonly log: Logger,
  ) {
    const csi = loadCsi();
    this.services = routerServices(opts);
    const rpcLog = log.child({ component: 'csi' });
    this.server.addService(csi.Identity.service, bindService(this.services.identity, rpcLog));
    this.server.addService(csi.Controller.service, bindService(this.services.controller, rpcLog));
  }

  async start(): Promise<void> {
    const sock = await bindUnixSocket(this.server, this.opts.endpoint);
    this.sock = sock;
    this.log.info({ endpoint: this.opts.endpoint, driver: this.opts.driverName }, 'serving snapshot router');
  }

  async stop(): Promise<void> {
    await shutdownGracefully(this.server, 10_000);
    this.services.close();
    if (this.sock) await fsp.rm(this.sock, { force: true });
  }
}
