import { invalidInput, unavailable } from '../errors.js';
import type { Logger } from '../observe/logger.js';
import { watchForPath, type PathWatch } from '../system/path-watch.js';
import type { QuotaBackend } from './quota.js';

/**
 * configured: not tried yet; preparing: a preparation is under way; ready: prepared and loaded;
 * failed: the last preparation failed (reason), the next one is scheduled (nextRetryAt).
 */
export type PoolPhase = 'configured' | 'preparing' | 'ready' | 'failed';

export const POOL_PHASES: readonly PoolPhase[] = ['configured', 'preparing', 'ready', 'failed'];

/** What a successful preparation leaves, for as long as the pool stays ready. */
export interface Prepared {
  quota: QuotaBackend;
  /** The pool shares the node's root filesystem (its disk is not mounted there); undefined: unknown. */
  onRootFilesystem?: boolean;
}

/** How the supervisor drives one pool; the work itself belongs to whoever owns the pool's volumes. */
export interface PoolLifecycle {
  name: string;
  /** Prepares the pool and loads its volumes; rejects with why it cannot. Never runs twice at once. */
  load(): Promise<Prepared>;
  /** Cheap: is what load() built still there? */
  intact(): boolean;
  /** Forgets what load() built: the pool went away and is prepared afresh. */
  unload(): void;
  /** A path the pool is waiting for while it does not exist (its directory, its device), if any. */
  missingPath(): string | undefined;
  /** A shorter longest wait between retries, for a pool that waits for what no watch sees (a mount). */
  retryMaxMs?: number;
}

/** One pool's state as the supervisor knows it; reading it never changes it. */
export interface PoolStateView {
  name: string;
  phase: PoolPhase;
  /** failed: why. */
  reason?: string;
  /** failed: when the supervisor tries again (ms since the epoch). */
  nextRetryAt?: number;
  /** Preparations that failed in a row. */
  failures: number;
  /** When the pool entered this phase (ms since the epoch). */
  since: number;
  /** ready: how volume sizes are enforced. */
  backend?: QuotaBackend['kind'];
  /** ready: whether the pool is on the node's root filesystem, as found when it was prepared. */
  onRootFilesystem?: boolean;
}

export interface SupervisorOptions {
  /** The first retry after a failure; doubled after each further failure. */
  retryInitialMs?: number;
  /** The longest wait between two retries. */
  retryMaxMs?: number;
  /** How often ready pools are checked for having gone away. */
  checkIntervalMs?: number;
  /** Calls back when a missing path appears (tests replace it). */
  watch?: (path: string, onAppear: () => void) => PathWatch;
}

export const DEFAULT_RETRY_INITIAL_MS = 1_000;
export const DEFAULT_RETRY_MAX_MS = 60_000;
const DEFAULT_CHECK_INTERVAL_MS = 5_000;

type Trigger = 'start' | 'retry' | 'call' | 'appeared' | 'vanished';

interface Entry {
  lc: PoolLifecycle;
  phase: PoolPhase;
  since: number;
  failures: number;
  reason?: string;
  nextRetryAt?: number;
  prepared?: Prepared;
  attempt?: Promise<Prepared>;
  timer?: NodeJS.Timeout;
  watch?: PathWatch;
}

const ignore = () => {};

/**
 * Owns when each pool is prepared: once at start, again after a failure (backoff: 1 s doubling to
 * 60 s by default), at once when a path it was missing appears, when a ready pool turned out gone,
 * and when a caller that needs the pool asks (ensure()). Reads (state(), settled()) never start
 * a preparation, so a probe or a scrape cannot format a device or reconcile a pool.
 */
export class PoolSupervisor {
  private readonly entries = new Map<string, Entry>();
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly checkIntervalMs: number;
  private readonly watch: NonNullable<SupervisorOptions['watch']>;
  private checker?: NodeJS.Timeout;
  private closed = false;

  constructor(
    pools: PoolLifecycle[],
    private readonly log: Logger,
    opts: SupervisorOptions = {},
  ) {
    this.retryInitialMs = opts.retryInitialMs ?? DEFAULT_RETRY_INITIAL_MS;
    this.retryMaxMs = Math.max(this.retryInitialMs, opts.retryMaxMs ?? DEFAULT_RETRY_MAX_MS);
    this.checkIntervalMs = opts.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS;
    this.watch = opts.watch ?? watchForPath;
    for (const lc of pools) this.entries.set(lc.name, { lc, phase: 'configured', since: Date.now(), failures: 0 });
  }

  /** Prepares every pool once, one after the other; a pool that fails is retried in the background. */
  async start(): Promise<void> {
    for (const e of this.entries.values()) await this.attempt(e, 'start').catch(ignore);
    if (this.closed || this.checker) return;
    this.checker = setInterval(() => this.checkReady(), this.checkIntervalMs);
    this.checker.unref();
  }

  state(name: string): PoolStateView {
    const e = this.entry(name);
    return {
      name,
      phase: e.phase,
      failures: e.failures,
      since: e.since,
      ...(e.reason !== undefined ? { reason: e.reason } : {}),
      ...(e.nextRetryAt !== undefined ? { nextRetryAt: e.nextRetryAt } : {}),
      ...(e.phase === 'ready' && e.prepared ? { backend: e.prepared.quota.kind } : {}),
      ...(e.phase === 'ready' && e.prepared?.onRootFilesystem !== undefined ? { onRootFilesystem: e.prepared.onRootFilesystem } : {}),
    };
  }

  /** The state once a preparation under way has finished, or after `waitMs`; starts none. */
  async settled(name: string, waitMs: number): Promise<PoolStateView> {
    const running = this.entry(name).attempt;
    if (running) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)));
      try {
        await Promise.race([running.then(ignore, ignore), late]);
      } finally {
        clearTimeout(timer);
      }
    }
    return this.state(name);
  }

  /** The quota backend of a ready pool. */
  quota(name: string): QuotaBackend | undefined {
    const e = this.entry(name);
    return e.phase === 'ready' ? e.prepared?.quota : undefined;
  }

  /**
   * For callers that need the pool now (a CO retries its calls, so a call is worth a try): the
   * pool's preparation, started now unless it is ready or one is under way.
   */
  async ensure(name: string): Promise<Prepared> {
    const e = this.entry(name);
    if (e.phase === 'ready' && e.prepared) {
      if (e.lc.intact()) return e.prepared;
      // Its metadata vanished under us: forget the pool and prepare it afresh (or report why not).
      e.lc.unload();
      return this.attempt(e, 'vanished');
    }
    return this.attempt(e, 'call');
  }

  /** Stops retries, watches and checks, and waits for a preparation under way. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.checker);
    const running: Array<Promise<unknown>> = [];
    for (const e of this.entries.values()) {
      this.cancelRetry(e);
      if (e.attempt) running.push(e.attempt.catch(ignore));
    }
    await Promise.all(running);
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw invalidInput(`storage pool ${name} is not configured`);
    return e;
  }

  /** Runs the pool's preparation, or joins the one under way: one at a time per pool. */
  private attempt(e: Entry, trigger: Trigger): Promise<Prepared> {
    if (e.attempt) return e.attempt;
    if (this.closed) return Promise.reject(unavailable(`pool ${e.lc.name}: the driver is shutting down`));
    this.cancelRetry(e);
    this.enter(e, 'preparing');
    if (trigger !== 'start') this.log[trigger === 'call' ? 'debug' : 'info']({ pool: e.lc.name, trigger, failures: e.failures }, 'preparing pool');
    // load() runs a tick later, so e.attempt is set before it can settle, even if it throws at once.
    const attempt = Promise.resolve()
      .then(() => e.lc.load())
      .then(
        (prepared) => {
          e.attempt = undefined;
          e.failures = 0;
          this.enter(e, 'ready');
          e.prepared = prepared;
          return prepared;
        },
        (err: unknown) => {
          e.attempt = undefined;
          e.failures++;
          this.enter(e, 'failed', reasonOf(err));
          if (!this.closed) this.scheduleRetry(e);
          const fields = { pool: e.lc.name, err: String(err), failures: e.failures, retryAt: e.nextRetryAt && new Date(e.nextRetryAt).toISOString() };
          if (e.failures === 1) this.log.error(fields, 'pool not loaded');
          else this.log.warn(fields, 'pool not loaded');
          throw err;
        },
      );
    e.attempt = attempt;
    return attempt;
  }

  private enter(e: Entry, phase: PoolPhase, reason?: string): void {
    e.phase = phase;
    e.since = Date.now();
    e.reason = reason;
    e.nextRetryAt = undefined;
    if (phase !== 'ready') e.prepared = undefined;
  }

  private scheduleRetry(e: Entry): void {
    const delay = Math.min(this.retryInitialMs * 2 ** Math.min(e.failures - 1, 30), this.retryMaxMs, e.lc.retryMaxMs ?? Infinity);
    e.nextRetryAt = Date.now() + delay;
    e.timer = setTimeout(() => {
      e.timer = undefined;
      this.attempt(e, 'retry').catch(ignore);
    }, delay);
    e.timer.unref();
    const missing = e.lc.missingPath();
    if (missing) {
      e.watch = this.watch(missing, () => {
        e.watch = undefined;
        if (e.phase === 'failed') this.attempt(e, 'appeared').catch(ignore);
      });
    }
  }

  private cancelRetry(e: Entry): void {
    clearTimeout(e.timer);
    e.timer = undefined;
    e.watch?.close();
    e.watch = undefined;
  }

  private checkReady(): void {
    for (const e of this.entries.values()) {
      if (e.phase !== 'ready' || e.attempt) continue;
      let intact: boolean;
      try {
        intact = e.lc.intact();
      } catch (err) {
        this.log.debug({ pool: e.lc.name, err: String(err) }, 'pool check failed; the next call on the pool looks again');
        continue;
      }
      if (intact) continue;
      // Gone: back to preparing, and to failed (retried) if it is not there any more.
      e.lc.unload();
      this.attempt(e, 'vanished').catch(ignore);
    }
  }
}

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
