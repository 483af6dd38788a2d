import type { Logger } from './observe/logger.js';
import type { PoolConfig } from './pools/config.js';
import { Pool } from './pools/pool.js';
import { CsiServer } from './csi/server.js';
import { setExecLogger } from './system/exec.js';
import { VolumeManager } from './volumes/manager.js';
import { VERSION } from './version.js';

export interface DriverOptions {
  endpoint: string;
  nodeName: string;
  driverName: string;
  pools: PoolConfig[];
  /** Filesystem overhead for pools whose config names none (decimal string). */
  defaultFilesystemOverhead?: string;
}

/** The daemon: pools and volumes reconciled, CSI served on the socket. */
export class DriverApp {
  readonly volumes: VolumeManager;
  private readonly server: CsiServer;

  constructor(
    readonly opts: DriverOptions,
    private readonly log: Logger,
  ) {
    setExecLogger(log.child({ component: 'exec' }));
    this.volumes = new VolumeManager(opts.nodeName, opts.pools.map(
        (p) => new Pool({ ...p, filesystemOverhead: p.filesystemOverhead ?? opts.defaultFilesystemOverhead }, log.child({ component: 'pool', pool: p.name })),
      ), log.child({ component: 'volumes' }));
    this.server = new CsiServer(
      { driverName: opts.driverName, version: VERSION, node: opts.nodeName, volumes: this.volumes, log },
      log.child({ component: 'csi' }),
    );
  }

  async start(): Promise<void> {
    const started = Date.now();
    await this.volumes.start();
    await this.server.listen(this.opts.endpoint);
    this.log.info(
      { endpoint: this.opts.endpoint, driver: this.opts.driverName, node: this.opts.nodeName, version: VERSION, volumes: this.volumes.list().length, ms: Date.now() - started },
      'serving CSI',
    );
  }

  async stop(): Promise<void> {
    await this.server.close();
    await this.volumes.close();
    this.log.info('stopped');
  }
}
