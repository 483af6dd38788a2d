import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CapacityFigures } from '../pools/capacity.js';
import type { RpcObserver } from './rpc-observer.js';
import type { VolumeMode, VolumeRecord } from '../format/records.js';
import { poolStatuses, withTimeout, type PoolStatus, type VolumeSource } from './health.js';
import type { Logger } from './logger.js';
import type { PreallocationInProgress } from '../volumes/preallocations.js';

export const METRICS_PREFIX = 'hpp_';

/** RPC latency buckets: 0.5 ms (Identity calls) … 60 s (a preallocated multi-GiB disk image). */
export const RPC_DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const MODES: VolumeMode[] = ['filesystem', 'block'];
const PREALLOCATION_METHODS = ['none', 'fallocate', 'full'] as const;

/** Volumes per pool and mode; every configured pool gets both modes, 0 when it has none. */
export function volumesByPoolAndMode(records: VolumeRecord[], pools: string[]): Map<string, Map<VolumeMode, number>> {
  const out = new Map<string, Map<VolumeMode, number>>();
  for (const p of pools) out.set(p, new Map(MODES.map((m) => [m, 0])));
  for (const r of records) {
    const byMode = out.get(r.pool) ?? new Map(MODES.map((m) => [m, 0]));
    byMode.set(r.mode, (byMode.get(r.mode) ?? 0) + 1);
    out.set(r.pool, byMode);
  }
  return out;
}

/** Volumes by how their data was allocated (records written before the field existed count as 'none'). */
export function volumesByPreallocation(records: VolumeRecord[]): Map<string, number> {
  const out = new Map<string, number>(PREALLOCATION_METHODS.map((m) => [m, 0]));
  for (const r of records) {
    const m = r.preallocation ?? 'none';
    out.set(m, (out.get(m) ?? 0) + 1);
  }
  return out;
}

/**
 * Loop devices this daemon holds for block volumes: distinct devices recorded in publications (one
 * device serves every publication of an image in the same read-only mode). Read from the records, so a
 * scrape runs no tool.
 */
export function attachedLoopDevices(records: VolumeRecord[]): number {
  const devices = new Set<string>();
  for (const r of records) {
    if (r.mode !== 'block') continue;
    for (const p of Object.values(r.publications)) if (p.device) devices.add(p.device);
  }
  return devices.size;
}

interface PoolSample extends PoolStatus {
  figures?: CapacityFigures;
}

export interface DriverMetricsOptions {
  version: string;
  /** Process metrics (CPU, memory, event loop, GC) with the hpp_ prefix; default true. */
  defaultMetrics?: boolean;
  /** How long a scrape waits for one pool's figures before leaving them out. */
  poolTimeoutMs?: number;
  /** Whether kubelet has registered the driver; undefined: the daemon does not register itself (no series). */
  kubeletRegistered?: () => boolean;
  /** The preallocations under way (VolumeManager.preallocations); none when not given. */
  preallocations?: () => PreallocationInProgress[];
}

/**
 * The daemon's Prometheus metrics, in a registry of its own (several daemons can live in one process,
 * as in tests). RPC metrics are pushed by the request wrapper (RpcObserver); pool and volume gauges are
 * computed when scraped.
 */
export class DriverMetrics implements RpcObserver {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'code'>;
  private readonly duration: Histogram<'method' | 'code'>;
  /** The pool figures of the scrape under way, shared by its gauges. */
  private sample?: Promise<PoolSample[]>;

  constructor(
    private readonly volumes: VolumeSource,
    private readonly log: Logger,
    private readonly opts: DriverMetricsOptions,
  ) {
    const registers = [this.registry];
    const p = METRICS_PREFIX;
    this.requests = new Counter({
      name: `${p}csi_rpc_requests_total`,
      help: 'CSI calls answered, by method and gRPC status code.',
      labelNames: ['method', 'code'],
      registers,
    });
    this.duration = new Histogram({
      name: `${p}csi_rpc_duration_seconds`,
      help: 'Time to answer a CSI call, by method and gRPC status code.',
      labelNames: ['method', 'code'],
      buckets: RPC_DURATION_BUCKETS,
      registers,
    });

    new Gauge({
      name: `${p}build_info`,
      help: 'Always 1; the driver version in a label.',
      labelNames: ['version'],
      registers,
    }).set({ version: opts.version }, 1);

    const self = this;
    const poolGauge = (
      name: string,
      help: string,
      value: (s: PoolSample) => bigint | number | undefined,
      labels: (s: PoolSample) => Record<string, string> = (s) => ({ pool: s.name }),
      labelNames = ['pool'],
    ) =>
      new Gauge({
        name: `${p}${name}`,
        help,
        labelNames,
        registers,
        async collect() {
          this.reset();
          for (const s of await self.pools()) {
            const v = value(s);
            if (v !== undefined) this.set(labels(s), Number(v));
          }
        },
      });
    poolGauge('pool_capacity_bytes', "Size of the pool's filesystem.", (s) => s.figures?.totalBytes);
    poolGauge('pool_used_bytes', "Bytes in use on the pool's filesystem (volumes and anything else on it).", (s) => s.figures?.usedBytes);
    poolGauge('pool_available_bytes', 'What a new volume can be promised (GetCapacity): free space minus what existing volumes may still grow into, divided by the over-commit ratio.', (s) => s.figures?.availableBytes);
    poolGauge('pool_reserved_bytes', 'What existing volumes may still grow into (capacity minus usage; whole capacity when usage is unknown).', (s) => s.figures?.reservedBytes);
    poolGauge('pool_ready', '1 when the pool is there, writable and its volumes loaded; 0 otherwise.', (s) => (s.ready ? 1 : 0));
    poolGauge(
      'pool_state',
      "The pool's state in the supervisor, 1 for the current one: configured (not tried yet), preparing, ready, failed (retried with backoff).",
      (s) => (s.phase ? 1 : undefined),
      (s) => ({ pool: s.name, state: s.phase! }),
      ['pool', 'state'],
    );
    poolGauge(
      'pool_size_enforced',
      'Whether volume sizes are enforced in the pool (1) or advisory (0); backend: xfs-project, ext4-project, btrfs-qgroup or none.',
      (s) => (s.backend ? (s.backend === 'none' ? 0 : 1) : undefined),
      (s) => ({ pool: s.name, backend: s.backend! }),
      ['pool', 'backend'],
    );
    poolGauge(
      'pool_on_root_filesystem',
      "1 when the pool shares the node's root filesystem (its disk is not mounted at the pool path), 0 when it does not; found when the pool was prepared.",
      (s) => (s.ready && s.onRootFilesystem !== undefined ? (s.onRootFilesystem ? 1 : 0) : undefined),
    );

    new Gauge({
      name: `${p}volumes`,
      help: 'Volumes on this node, by pool and mode (filesystem or block).',
      labelNames: ['pool', 'mode'],
      registers,
      collect() {
        this.reset();
        const counts = volumesByPoolAndMode(self.volumes.list(), self.volumes.poolList().map((x) => x.name));
        for (const [pool, byMode] of counts) for (const [mode, n] of byMode) this.set({ pool, mode }, n);
      },
    });
    new Gauge({
      name: `${p}volumes_preallocated`,
      help: 'Volumes by how their data was allocated: none (sparse), fallocate, or full (zeros written).',
      labelNames: ['method'],
      registers,
      collect() {
        this.reset();
        for (const [method, n] of volumesByPreallocation(self.volumes.list())) this.set({ method }, n);
      },
    });
    new Gauge({
      name: `${p}loop_devices_attached`,
      help: 'Loop devices attached for published block volumes of this node.',
      registers,
      collect() {
        this.set(attachedLoopDevices(self.volumes.list()));
      },
    });

    const preallocations = opts.preallocations ?? (() => []);
    new Gauge({
      name: `${p}preallocation_remaining_bytes`,
      help: 'Bytes a preallocation under way has still to allocate (disk.img or block image of a volume being created, restored, cloned or expanded with preallocation); no series when none runs.',
      labelNames: ['pool', 'volume'],
      registers,
      collect() {
        this.reset();
        const byVolume = new Map<string, { pool: string; volume: string; bytes: bigint }>();
        for (const j of preallocations()) {
          const key = `${j.pool}\0${j.volume}`;
          const e = byVolume.get(key) ?? { pool: j.pool, volume: j.volume, bytes: 0n };
          e.bytes += j.remainingBytes;
          byVolume.set(key, e);
        }
        for (const e of byVolume.values()) this.set({ pool: e.pool, volume: e.volume }, Number(e.bytes));
      },
    });

    const kubeletRegistered = opts.kubeletRegistered;
    if (kubeletRegistered) {
      new Gauge({
        name: `${p}kubelet_registered`,
        help: "1 when kubelet's last NotifyRegistrationStatus said it registered the driver; 0 before it did, or when it reported a failure (logged with kubelet's error).",
        registers,
        collect() {
          this.set(kubeletRegistered() ? 1 : 0);
        },
      });
    }

    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: p });
  }

  /** RpcObserver: called once per answered CSI call. Never throws (it runs inside the RPC's callback path). */
  observe(method: string, code: string, seconds: number): void {
    try {
      this.requests.inc({ method, code });
      this.duration.observe({ method, code }, seconds);
    } catch (err) {
      this.log.warn({ method, code, err: String(err) }, 'could not record RPC metrics');
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text; pool figures are read fresh (shared by the gauges of one scrape). */
  async render(): Promise<string> {
    this.sample = undefined;
    return this.registry.metrics();
  }

  /**
   * Pool readiness and figures for the pool gauges: read once per scrape (render() starts a new one)
   * and shared by the gauges' collect(). A pool that is not ready, or whose figures cannot be read,
   * has ready 0 and no capacity figures; the scrape itself never fails for it.
   */
  private pools(): Promise<PoolSample[]> {
    return (this.sample ??= this.readPools());
  }

  private async readPools(): Promise<PoolSample[]> {
    const timeout = this.opts.poolTimeoutMs ?? 3_000;
    const statuses = await poolStatuses(this.volumes, timeout);
    return Promise.all(
      statuses.map(async (s): Promise<PoolSample> => {
        if (!s.ready) return s;
        try {
          return { ...s, figures: await withTimeout(this.volumes.capacityOf(s.name), timeout, `capacity of pool ${s.name}`) };
        } catch (err) {
          this.log.debug({ pool: s.name, err: String(err) }, 'pool figures left out of this scrape');
          return s;
        }
      }),
    );
  }
}
