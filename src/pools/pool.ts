import { constants, statfsSync, statSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../observe/logger.js';
import { silentLogger } from '../observe/logger.js';
import { ProcessLock } from '../system/flock.js';
import type { Host } from '../system/host.js';
import type { PoolConfig } from './config.js';
import { ensureDevicePool } from './device.js';
import { detectQuota, type QuotaBackend } from './quota.js';
import { onRootFilesystem } from './root-filesystem.js';
import { claimNotMounted } from './claim-mount.js';
import { DEFAULT_FILESYSTEM_OVERHEAD, parseOverhead, type Overhead } from '../volumes/disk-image.js';
import { layoutDirs, poolLayout, resolveInside, type PoolLayout } from '../format/layout.js';

export interface PoolHealth {
  ready: boolean;
  reason?: string;
}

/**
 * The outcome of prepare(): ready with the pool's quota backend and whether the pool shares the node's
 * root filesystem (undefined: could not tell), or why not.
 */
export type PoolPreparation = { ready: true; quota: QuotaBackend; onRootFilesystem?: boolean } | { ready: false; reason: string };

export interface PoolCapacity {
  totalBytes: bigint;
  availableBytes: bigint;
  usedBytes: bigint;
}

/** A storage pool on this node; its private layout is format/layout.ts's. */
export class Pool implements PoolLayout {
  readonly name: string;
  readonly root: string;
  readonly useNamingPrefix: boolean;
  readonly device?: string;
  /** The pool is a claim's filesystem mounted at root by its holder (see claim-mount.ts). */
  readonly awaitMount: boolean;
  readonly overcommitRatio: number;
  /** Where hostpath-provisioner volumes are served from: 'auto', 'none' or a directory (PoolConfig.hppVolumes). */
  readonly hppVolumes: string;
  readonly filesystemOverhead: Overhead;
  readonly metaDir: string;
  readonly volumesDir: string;
  readonly tmpDir: string;
  readonly trashDir: string;
  readonly snapshotsDir: string;
  /** Block volumes' image files. */
  readonly blockDir: string;
  readonly snapshotRecordsDir: string;
  readonly publicationLog: string;
  readonly projectIds: string;
  /** flock'ed by the daemon serving the pool (and by hppctl gc while it works). */
  readonly lockFile: string;
  private readonly lock: ProcessLock;

  constructor(
    cfg: PoolConfig,
    /** What the pool's preparation and figures ask of the OS. */
    readonly host: Host,
    private readonly log: Logger = silentLogger(),
  ) {
    this.name = cfg.name;
    this.root = cfg.path;
    this.useNamingPrefix = cfg.useNamingPrefix;
    this.device = cfg.device;
    this.awaitMount = cfg.awaitMount === true;
    this.overcommitRatio = cfg.overcommitRatio ?? 1;
    this.hppVolumes = cfg.hppVolumes ?? 'auto';
    this.filesystemOverhead = parseOverhead(cfg.filesystemOverhead ?? DEFAULT_FILESYSTEM_OVERHEAD, `pool ${cfg.name} filesystemOverhead`);
    const layout = poolLayout(this.root);
    this.metaDir = layout.metaDir;
    this.volumesDir = layout.volumesDir;
    this.tmpDir = layout.tmpDir;
    this.trashDir = layout.trashDir;
    this.snapshotsDir = layout.snapshotsDir;
    this.blockDir = layout.blockDir;
    this.snapshotRecordsDir = layout.snapshotRecordsDir;
    this.publicationLog = layout.publicationLog;
    this.projectIds = layout.projectIds;
    this.lockFile = layout.lockFile;
    this.lock = new ProcessLock(this.lockFile);
  }

  /**
   * Lays out the private directories. The pool root itself is never created here: a missing root
   * means a missing disk or a wrong path, and the pool stays not-ready until it appears. The quota
   * backend is returned, not kept: it belongs to this preparation (see PoolSupervisor).
   */
  async prepare(): Promise<PoolPreparation> {
    if (this.device) {
      const dev = await ensureDevicePool(this.host, this.name, this.device, this.root, this.log);
      if (!dev.ready) return { ready: false, reason: dev.reason ?? `pool ${this.name}: device ${this.device} is not usable` };
      if (dev.formatted) this.log.info({ device: this.device }, 'formatted blank device as XFS');
    }
    const health = await this.health();
    if (!health.ready) return { ready: false, reason: health.reason ?? `pool ${this.name} is not ready` };
    // Before anything is written: the layout must land on the claim, never on the directory under it.
    if (this.awaitMount) {
      const reason = claimNotMounted(this.name, await fsp.realpath(this.root), await this.host.mounts.table());
      if (reason) return { ready: false, reason };
    }
    for (const d of layoutDirs(this)) {
      await fsp.mkdir(d, { recursive: true, mode: 0o700 });
    }
    if (!(await this.lock.acquire())) {
      return { ready: false, reason: `pool ${this.name}: ${this.root} is in use by another daemon (pid ${await this.lock.holder()})` };
    }
    const quota = await detectQuota(this.host, this.root, this.metaDir);
    if (quota.kind === 'none') this.log.warn({ detail: quota.detail }, 'volume sizes are not enforced in this pool');
    else this.log.info({ detail: quota.detail }, 'volume sizes are enforced');
    const onRoot = await this.onRootFilesystem();
    if (onRoot) {
      this.log.warn(
        { root: this.root },
        "pool is on the root filesystem: its disk is not mounted at the pool path, so volumes fill the node's root filesystem (hpp_pool_on_root_filesystem 1)",
      );
    }
    return { ready: true, quota, ...(onRoot !== undefined ? { onRootFilesystem: onRoot } : {}) };
  }

  /** Does the pool directory share the filesystem mounted at the node's `/`? (see root-filesystem.ts) */
  private async onRootFilesystem(): Promise<boolean | undefined> {
    try {
      return onRootFilesystem(await fsp.realpath(this.root), await this.host.mounts.table());
    } catch (err) {
      this.log.debug({ root: this.root, err: String(err) }, 'cannot tell whether the pool is on the root filesystem');
      return undefined;
    }
  }

  /** What the pool waits for while it is not there: its device (a device pool mounts its own directory), else its directory. */
  missingPath(): string | undefined {
    const awaited = this.device ?? this.root;
    try {
      statSync(awaited);
      return undefined;
    } catch {
      return awaited;
    }
  }

  async release(): Promise<void> {
    await this.lock.release();
  }

  async health(): Promise<PoolHealth> {
    try {
      const st = await fsp.stat(this.root);
      if (!st.isDirectory()) return { ready: false, reason: `${this.root} is not a directory` };
      await fsp.access(this.root, constants.W_OK);
      return { ready: true };
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const what = e.code === 'ENOENT' ? 'does not exist' : e.code === 'EROFS' ? 'is read-only' : `is not usable (${e.code ?? e.message})`;
      return { ready: false, reason: `pool ${this.name}: ${this.root} ${what}` };
    }
  }

  async capacity(): Promise<PoolCapacity> {
    const s = await this.host.files.statfs(this.root);
    return { totalBytes: s.totalBytes, availableBytes: s.availableBytes, usedBytes: s.totalBytes - s.freeBytes };
  }

  /** Absolute path of something inside the pool; refuses anything that would leave it. */
  resolveInside(rel: string): string {
    return resolveInside(this.root, rel, this.name);
  }
}
