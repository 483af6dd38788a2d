import * as grpc from '@grpc/grpc-js';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { loadCsi } from '../csi/proto.js';
import { bindService } from '../csi/rpc.js';
import { socketPath } from '../csi/server.js';
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
    const sock = socketPath(this.opts.endpoint);
    await fsp.mkdir(path.dirname(sock), { recursive: true });
    const st = await fsp.lstat(sock).catch(() => undefined);
    if (st) {
      if (!st.isSocket()) throw new Error(`${sock} exists and is not a socket; refusing to remove it`);
      await fsp.unlink(sock);
    }
    await new Promise<void>((resolve, reject) =>
      this.server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    this.sock = sock;
    this.log.info({ endpoint: this.opts.endpoint, driver: this.opts.driverName }, 'serving snapshot router');
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    this.services.close();
    if (this.sock) await fsp.rm(this.sock, { force: true });
  }
}
