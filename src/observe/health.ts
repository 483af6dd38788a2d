import type { Pool } from '../pools/pool.js';
import type { QuotaBackend } from '../pools/quota.js';
import type { PoolPhase, PoolStateView } from '../pools/supervisor.js';
import { probeUnixSocket } from '../system/unix-socket.js';
import type { VolumeManager } from '../volumes/manager.js';

/** The outcome of a health check: ok, or the reasons it is not. */
export interface CheckResult {
  ok: boolean;
  problems: string[];
}

/** What health and metrics need from a pool (a Pool, or a fake in unit tests). */
export type PoolView = Pick<Pool, 'name' | 'health'>;

/** What health and metrics need from the volume manager: reads only, none of them prepares a pool. */
export interface VolumeSource {
  list: VolumeManager['list'];
  poolList(): PoolView[];
  /** A ready pool's figures; rejects for a pool that is not ready. */
  capacityOf: VolumeManager['capacityOf'];
  /** The supervisor's state of the pool, once a preparation under way has finished or `waitMs` passed. */
  poolState(pool: string, waitMs?: number): Promise<PoolStateView>;
}

export interface PoolStatus {
  name: string;
  /** The supervisor's phase of the pool. */
  phase?: PoolPhase;
  /** The pool is prepared, its volumes are loaded, and it is there and writable. */
  ready: boolean;
  reason?: string;
  /** How volume sizes are enforced; known while the pool is prepared. */
  backend?: QuotaBackend['kind'];
  /** Whether the pool is on the node's root filesystem; known while the pool is prepared. */
  onRootFilesystem?: boolean;
}

/** Rejects with a "did not answer" error when `p` takes longer than `ms`. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

const PHASE_TEXT: Record<PoolPhase, (ms: number) => string> = {
  configured: () => 'not prepared yet',
  preparing: (ms) => `still being prepared after ${ms} ms`,
  ready: () => 'ready',
  failed: () => 'failed',
};

/**
 * Every pool's readiness, for Identity Probe, /readyz and the metrics alike: the supervisor's state
 * (a preparation under way is waited for up to `waitMs`, none is started: a probe never formats a
 * device or reconciles a pool), then, for a ready pool, whether its directory is there and writable.
 */
export async function poolStatuses(volumes: VolumeSource, waitMs = 3_000): Promise<PoolStatus[]> {
  return Promise.all(
    volumes.poolList().map(async (pool): Promise<PoolStatus> => {
      const named = (msg: string) => (msg.includes(pool.name) ? msg : `pool ${pool.name}: ${msg}`);
      try {
        const { phase, reason, backend, onRootFilesystem } = await volumes.poolState(pool.name, waitMs);
        if (phase !== 'ready') return { name: pool.name, phase, ready: false, reason: named(reason ?? PHASE_TEXT[phase](waitMs)) };
        const h = await pool.health();
        if (!h.ready) return { name: pool.name, phase, ready: false, reason: h.reason ?? `pool ${pool.name} is not ready`, backend };
        return { name: pool.name, phase, ready: true, backend, ...(onRootFilesystem !== undefined ? { onRootFilesystem } : {}) };
      } catch (err) {
        return { name: pool.name, ready: false, reason: named((err as Error).message ?? String(err)) };
      }
    }),
  );
}

/** Readiness: every pool ready. */
export async function readiness(volumes: VolumeSource, waitMs?: number): Promise<CheckResult> {
  const problems = (await poolStatuses(volumes, waitMs)).filter((s) => !s.ready).map((s) => s.reason ?? `pool ${s.name} is not ready`);
  return { ok: problems.length === 0, problems };
}

/**
 * Is a unix socket there and accepting connections? Connects and hangs up at once (no gRPC call, so
 * nothing is logged or counted per probe); undefined when it answered, else why not.
 */
export async function socketAnswers(sock: string, timeoutMs = 1_000): Promise<string | undefined> {
  const s = await probeUnixSocket(sock, timeoutMs);
  switch (s.state) {
    case 'live':
      return undefined;
    case 'absent':
      return `CSI socket ${sock} is missing`;
    case 'not-socket':
      return `${sock} is not a socket`;
    case 'stale':
      return `CSI socket ${sock} refuses connections (ECONNREFUSED)`;
    case 'unknown':
      return `CSI socket ${sock} does not accept connections (${s.cause.message})`;
  }
}
