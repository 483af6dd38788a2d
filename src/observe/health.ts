import type { Pool } from '../pools/pool.js';
import type { QuotaBackend } from '../pools/quota.js';
import { probeUnixSocket } from '../system/unix-socket.js';
import type { VolumeManager } from '../volumes/manager.js';

/** The outcome of a health check: ok, or the reasons it is not. */
export interface CheckResult {
  ok: boolean;
  problems: string[];
}

/** What health and metrics need from a pool (a Pool, or a fake in unit tests). */
export type PoolView = Pick<Pool, 'name' | 'health'> & { quota?: Pick<QuotaBackend, 'kind'> };

/** What health and metrics need from the volume manager. */
export interface VolumeSource {
  list: VolumeManager['list'];
  poolList(): PoolView[];
  capacityOf: VolumeManager['capacityOf'];
  /** Resolves once the pool's volumes are loaded (loading them if the pool has become reachable). */
  ensureLoaded(pool: string): Promise<unknown>;
}

export interface PoolStatus {
  name: string;
  /** The pool is there, writable, and its volumes are loaded. */
  ready: boolean;
  reason?: string;
  /** How volume sizes are enforced; known once the pool was prepared. */
  backend?: QuotaBackend['kind'];
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

/**
 * Every pool's readiness, for Identity Probe and /readyz alike: its volumes are loaded (loading
 * them now if the pool appeared since start; a device pool creates and mounts its directory while
 * loading, so loading comes before the directory check) and the directory is there and writable.
 * Pools are looked at in parallel; a pool still loading after `loadTimeoutMs` is reported as such.
 */
export async function poolStatuses(volumes: VolumeSource, loadTimeoutMs = 3_000): Promise<PoolStatus[]> {
  return Promise.all(
    volumes.poolList().map(async (pool): Promise<PoolStatus> => {
      try {
        await withTimeout(volumes.ensureLoaded(pool.name), loadTimeoutMs, `loading pool ${pool.name}`);
        const h = await pool.health();
        if (!h.ready) return { name: pool.name, ready: false, reason: h.reason ?? `pool ${pool.name} is not ready`, backend: pool.quota?.kind };
        return { name: pool.name, ready: true, backend: pool.quota?.kind };
      } catch (err) {
        const msg = (err as Error).message ?? String(err);
        return { name: pool.name, ready: false, reason: msg.includes(pool.name) ? msg : `pool ${pool.name}: ${msg}`, backend: pool.quota?.kind };
      }
    }),
  );
}

/** Readiness: every pool ready and loaded. */
export async function readiness(volumes: VolumeSource, loadTimeoutMs?: number): Promise<CheckResult> {
  const problems = (await poolStatuses(volumes, loadTimeoutMs)).filter((s) => !s.ready).map((s) => s.reason ?? `pool ${s.name} is not ready`);
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
