import * as grpc from '@grpc/grpc-js';
import { promises as fsp } from 'node:fs';
import { shutdownGracefully } from '../grpc-server.js';
import { bindService } from '../rpc.js';
import type { Logger } from '../../observe/logger.js';
import { bindName, registrationSocketPath } from '../../config/socket-names.js';
import { ConfigError } from '../../pools/config.js';
import { loadRegistration, registrationService } from './service.js';
import { bindOwnedSocket, checkSocketPath, removeIfOurs, stillOurs, type OwnedSocket } from './socket.js';

export interface RegistrarOptions {
  /** kubelet's plugins_registry directory as this process sees it. */
  dir: string;
  driverName: string;
  /** The CSI socket's path as kubelet sees it on the host. */
  kubeletEndpoint: string;
  /** First wait before offering the plugin again after kubelet reported a failure; doubles up to maxRetryMs. */
  retryMs?: number;
  maxRetryMs?: number;
}

/** kubelet's last word on the registration. */
export type RegistrationState =
  | { state: 'waiting' }
  | { state: 'registered'; at: string }
  | { state: 'failed'; error: string; at: string };

/**
 * node-driver-registrar's job, in the daemon: serves kubelet's plugin registration API on
 * `<dir>/<driver>-reg.sock` once the CSI socket is served, and keeps kubelet's verdict.
 *
 * kubelet does not retry a registration that failed after it recorded the plugin (NodeGetInfo failing,
 * the API server not answering while it fills CSINode); node-driver-registrar exits then, so that its
 * restart makes a new socket. Here the socket is made again instead, after a growing wait: kubelet sees
 * it go and come back and registers from scratch, and the daemon keeps serving volumes meanwhile.
 */
export class KubeletRegistrar {
  readonly socket: string;
  private status: RegistrationState = { state: 'waiting' };
  private infoCalls = 0;
  private current?: { server: grpc.Server; owned: OwnedSocket };
  private announcing?: Promise<void>;
  private retryTimer?: NodeJS.Timeout;
  private offeringAgain?: Promise<void>;
  private retryMs: number;
  private closing?: Promise<void>;

  constructor(
    private readonly opts: RegistrarOptions,
    private readonly log: Logger,
  ) {
    this.socket = registrationSocketPath(opts.dir, opts.driverName);
    this.retryMs = opts.retryMs ?? 10_000;
  }

  /** kubelet's verdict so far. */
  get state(): RegistrationState {
    return this.status;
  }

  /**
   * Refuses early, with nothing changed, when the socket cannot be served: the directory is missing
   * (it is kubelet's to make) or another process serves the socket.
   */
  async check(): Promise<void> {
    const st = await fsp.stat(this.opts.dir).catch((err: NodeJS.ErrnoException) => err);
    if (st instanceof Error) {
      throw new ConfigError(`--registration-dir: registration directory ${this.opts.dir}: ${st.code === 'ENOENT' ? 'missing (kubelet makes <root-dir>/plugins_registry; mount it here)' : st.message}`, { cause: st });
    }
    if (!st.isDirectory()) throw new ConfigError(`--registration-dir: registration directory ${this.opts.dir} is not a directory`);
    await checkSocketPath(this.socket);
    await checkSocketPath(bindName(this.socket));
  }

  /** Serves the registration socket: from now on kubelet may register the driver. */
  async listen(): Promise<void> {
    if (this.closing) return;
    await this.announce();
    this.log.info({ socket: this.socket, endpoint: this.opts.kubeletEndpoint, driver: this.opts.driverName }, 'offering the driver to kubelet');
  }

  /** Liveness problems: the socket served here was removed or replaced (kubelet then drops the driver). */
  async liveness(): Promise<string[]> {
    if (this.closing || this.announcing) return [];
    if (!this.current) return [`registration socket ${this.socket} not served yet`];
    switch (await stillOurs(this.current.owned)) {
      case 'ours':
        return [];
      case 'gone':
        return [`registration socket ${this.socket} was removed: kubelet has dropped the driver`];
      case 'replaced':
        return [`registration socket ${this.socket} was replaced by another process's`];
    }
  }

  /** Readiness problems: kubelet has not registered the driver (yet, or it reported why not). */
  readiness(): string[] {
    switch (this.status.state) {
      case 'registered':
        return [];
      case 'failed':
        return [`kubelet did not register the driver: ${this.status.error}`];
      case 'waiting':
        return [
          this.infoCalls > 0
            ? `kubelet asked for the plugin info on ${this.socket} but has not said whether it registered the driver`
            : `kubelet has not called on ${this.socket} yet (is ${this.opts.dir} kubelet's plugins_registry directory?)`,
        ];
    }
  }

  /** Stops offering the driver: removes the socket if it is still ours, then stops serving it. Idempotent. */
  close(graceMs = 2_000): Promise<void> {
    this.closing ??= (async () => {
      clearTimeout(this.retryTimer);
      await this.offeringAgain;
      await this.announcing?.catch(() => {});
      await this.withdraw(graceMs);
    })();
    return this.closing;
  }

  private announce(): Promise<void> {
    this.announcing ??= (async () => {
      const server = new grpc.Server({ 'grpc.enable_channelz': 0 });
      const service = loadRegistration().Registration.service;
      server.addService(
        service,
        bindService(service, registrationService(this.opts.driverName, this.opts.kubeletEndpoint, { onInfo: () => this.infoCalls++, onStatus: (ok, error) => this.onStatus(ok, error) }), this.log),
      );
      try {
        this.current = { server, owned: await bindOwnedSocket(server, this.socket) };
      } catch (err) {
        server.forceShutdown();
        throw err;
      }
    })().finally(() => {
      this.announcing = undefined;
    });
    return this.announcing;
  }

  private async withdraw(graceMs: number): Promise<void> {
    const current = this.current;
    this.current = undefined;
    if (!current) return;
    await removeIfOurs(current.owned);
    await shutdownGracefully(current.server, graceMs);
  }

  private onStatus(registered: boolean, error: string): void {
    const at = new Date().toISOString();
    const fields = { socket: this.socket, endpoint: this.opts.kubeletEndpoint, driver: this.opts.driverName };
    clearTimeout(this.retryTimer);
    if (registered) {
      this.status = { state: 'registered', at };
      this.retryMs = this.opts.retryMs ?? 10_000;
      this.log.info(fields, 'registered with kubelet');
      return;
    }
    this.status = { state: 'failed', error: error || 'kubelet gave no reason', at };
    const retryMs = this.retryMs;
    this.retryMs = Math.min(retryMs * 2, this.opts.maxRetryMs ?? 300_000);
    this.log.error({ ...fields, err: this.status.error, retryInMs: retryMs }, 'kubelet did not register the driver');
    this.retryTimer = setTimeout(() => {
      this.offeringAgain = this.offerAgain().finally(() => (this.offeringAgain = undefined));
    }, retryMs);
    this.retryTimer.unref();
  }

  /** A new socket at the same path: kubelet unregisters what it had and registers from scratch. */
  private async offerAgain(): Promise<void> {
    if (this.closing) return;
    try {
      await this.withdraw(0);
      if (this.closing) return;
      await this.announce();
      this.log.info({ socket: this.socket }, 'offering the driver to kubelet again');
    } catch (err) {
      this.log.error({ socket: this.socket, err: String(err) }, 'cannot offer the driver to kubelet again');
    }
  }
}
