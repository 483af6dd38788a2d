import type { Logger } from './observe/logger.js';
import { ConfigError, type PoolConfig } from './pools/config.js';
import { Pool } from './pools/pool.js';
import { CsiServer } from './csi/server.js';
import type { PeerTls } from './csi/peer-auth.js';
import { PeerServer } from './csi/peer-server.js';
import { readiness, socketAnswers, type CheckResult } from './observe/health.js';
import { ObserveServer, parseListenAddress, type ListenAddress } from './observe/http.js';
import { DriverMetrics } from './observe/metrics.js';
import { KubeletRegistrar } from './csi/registration/registrar.js';
import type { Host } from './system/host.js';
import type { MountBackendChoice } from './system/native-mount.js';
import { createHost } from './system/linux-host.js';
import { VolumeManager } from './volumes/manager.js';
import { VERSION } from './version.js';

export interface DriverOptions {
  endpoint: string;
  nodeName: string;
  driverName: string;
  pools: PoolConfig[];
  /** Filesystem overhead for pools whose config names none (decimal string). */
  defaultFilesystemOverhead?: string;
  /** `[HOST]:PORT` for /metrics, /healthz and /readyz; undefined, "" or "off": not served. */
  metricsAddress?: string;
  /** The TCP endpoint the routing controller calls for snapshots and expansion (token required). */
  peer?: { address: string; token: string; tls?: PeerTls };
  /** Register with kubelet: `dir` is its plugins_registry, `kubeletEndpoint` the CSI socket as kubelet sees it. */
  registration?: { dir: string; kubeletEndpoint: string };
  /** Retries of pools that failed to prepare: the first after `initialMs`, doubling up to `maxMs`. */
  poolRetry?: { initialMs: number; maxMs: number };
  /** How bind mounts are made (HPP_MOUNT_BACKEND=tools: mount(8)); default: the addon when it loads. */
  mountBackend?: MountBackendChoice;
}

/** The daemon: pools and volumes reconciled, CSI served on the socket, metrics and health over HTTP. */
export class DriverApp {
  readonly volumes: VolumeManager;
  readonly metrics: DriverMetrics;
  private readonly server: CsiServer;
  private readonly http?: ObserveServer;
  private readonly httpAddress?: ListenAddress;
  private readonly peer?: PeerServer;
  private readonly registrar?: KubeletRegistrar;
  /** The port the peer endpoint listens on once started. */
  peerPort?: number;
  /** The address /metrics is served on once started (the real port when asked for port 0). */
  metricsAddress?: string;
  private stopping?: Promise<void>;

  /** What the daemon asks of the OS: given to the volume manager, its pools and (through it) the handlers. */
  readonly host: Host;

  constructor(
    readonly opts: DriverOptions,
    private readonly log: Logger,
    host?: Host,
  ) {
    this.host = host ?? createHost({ log, mountBackend: opts.mountBackend });
    this.volumes = new VolumeManager(
      opts.nodeName,
      opts.pools.map(
        (p) => new Pool({ ...p, filesystemOverhead: p.filesystemOverhead ?? opts.defaultFilesystemOverhead }, this.host, log.child({ component: 'pool', pool: p.name })),
      ),
      this.host,
      log.child({ component: 'volumes' }),
      { supervisor: { retryInitialMs: opts.poolRetry?.initialMs, retryMaxMs: opts.poolRetry?.maxMs } },
    );
    if (opts.registration) {
      this.registrar = new KubeletRegistrar({ ...opts.registration, driverName: opts.driverName }, log.child({ component: 'registration' }));
    }
    const registrar = this.registrar;
    this.metrics = new DriverMetrics(this.volumes, log.child({ component: 'metrics' }), {
      version: VERSION,
      kubeletRegistered: registrar && (() => registrar.state.state === 'registered'),
      preallocations: () => this.volumes.preallocations.list(),
    });
    const ctx = { driverName: opts.driverName, version: VERSION, node: opts.nodeName, volumes: this.volumes, log };
    this.server = new CsiServer(ctx, log.child({ component: 'csi' }), this.metrics);
    if (opts.peer) this.peer = new PeerServer(ctx, log.child({ component: 'peer' }), opts.peer.token, opts.peer.tls, this.metrics);
    this.httpAddress = parseListenAddress(opts.metricsAddress ?? '');
    if (this.httpAddress) {
      this.http = new ObserveServer(
        {
          metrics: async () => ({ contentType: this.metrics.contentType, body: await this.metrics.render() }),
          healthz: () => this.liveness(),
          readyz: () => this.readiness(),
        },
        log.child({ component: 'http' }),
      );
    }
  }

  async start(): Promise<void> {
    const started = Date.now();
    // The endpoint before anything else: a second daemon started on it must leave the socket, the
    // metrics port, the pools and their mounts to the one serving.
    await this.server.claim(this.opts.endpoint);
    // Metrics and health next, so that a slow start (formatting a device pool, reconciling many
    // volumes) can be watched: /readyz says what is missing until the pools are ready. They only read
    // the pools' state: preparing pools is start-up's and the supervisor's job.
    await this.startHttp();
    try {
      await this.registrar?.check();
      await this.volumes.start();
      if (this.stopping) return;
      await this.server.listen();
      // Only now: kubelet calls NodeGetInfo as soon as it has registered the driver.
      await this.registrar?.listen();
      if (this.peer && this.opts.peer) this.peerPort = await this.listenPeer(this.peer, this.opts.peer.address);
    } catch (err) {
      await this.registrar?.close();
      await this.http?.close();
      await this.server.close(0);
      throw err;
    }
    if (this.stopping) return;
    this.log.info(
      {
        endpoint: this.opts.endpoint,
        driver: this.opts.driverName,
        node: this.opts.nodeName,
        version: VERSION,
        volumes: this.volumes.list().length,
        metrics: this.metricsAddress ?? (this.http ? 'unavailable' : 'off'),
        peerPort: this.peerPort,
        registration: this.registrar?.socket ?? 'off',
        mounts: this.host.mounts.backend,
        ms: Date.now() - started,
      },
      'serving CSI',
    );
  }

  /**
   * A port taken or refused is logged, not fatal: kubelet still needs the CSI socket to unmount
   * volumes, and the readiness probe failing on the missing port makes the problem visible.
   */
  /** An address that cannot be listened on (no such host or interface) is the configuration's fault. */
  private async listenPeer(peer: PeerServer, address: string): Promise<number> {
    try {
      return await peer.listen(address);
    } catch (err) {
      throw new ConfigError(`--peer-address ${address}: cannot listen: ${(err as Error).message}`);
    }
  }

  private async startHttp(): Promise<void> {
    if (!this.http || !this.httpAddress) return;
    try {
      this.metricsAddress = await this.http.listen(this.httpAddress);
      this.log.info({ address: this.metricsAddress, paths: ['/metrics', '/healthz', '/readyz'] }, 'serving metrics and health');
    } catch (err) {
      this.log.error({ address: this.opts.metricsAddress, err: String(err) }, 'metrics and health endpoint not served');
    }
  }

  /** Liveness: the CSI socket is bound, not shutting down, and accepts connections; the registration socket (when served) is still ours. */
  async liveness(): Promise<CheckResult> {
    const sock = this.server.servingSocket;
    if (!sock) return { ok: false, problems: [this.stopping ? 'shutting down' : 'CSI socket not served yet'] };
    const why = await socketAnswers(sock);
    const problems = [...(why ? [why] : []), ...((await this.registrar?.liveness()) ?? [])];
    return { ok: problems.length === 0, problems };
  }

  /** Readiness: CSI served, every pool ready, there and writable, and kubelet's registration (when asked for). */
  async readiness(): Promise<CheckResult> {
    const [live, pools] = await Promise.all([this.liveness(), readiness(this.volumes, 2_000)]);
    const problems = [...live.problems, ...pools.problems, ...(this.registrar?.readiness() ?? [])];
    return { ok: problems.length === 0, problems };
  }

  /**
   * Stops offering the driver to kubelet and taking CSI calls, lets in-flight ones finish, removes the sockets, closes the HTTP server
   * and lets go of the pools. Idempotent: every call gets the same promise.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await Promise.all([this.registrar?.close(), this.server.close(), this.peer?.close()]);
      await this.http?.close();
      await this.volumes.close();
      this.log.info('stopped');
    })();
    return this.stopping;
  }
}
