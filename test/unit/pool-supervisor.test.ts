import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../src/observe/logger.js';
import type { QuotaBackend } from '../../src/pools/quota.js';
import { PoolSupervisor, type PoolLifecycle, type Prepared, type SupervisorOptions } from '../../src/pools/supervisor.js';

const quota = { kind: 'xfs-project' } as unknown as QuotaBackend;

/** A pool whose preparations fail or succeed as the test says, counting what the supervisor did to it. */
class FakePool implements PoolLifecycle {
  loads = 0;
  unloads = 0;
  /** What the next preparations do, in order; when empty, they succeed. */
  outcomes: Array<Error | 'ok' | Promise<void>> = [];
  isIntact = true;
  missing: string | undefined;

  constructor(readonly name: string) {}

  async load(): Promise<Prepared> {
    this.loads++;
    const next = this.outcomes.shift() ?? 'ok';
    if (next instanceof Error) throw next;
    if (next !== 'ok') await next;
    return { quota };
  }

  intact(): boolean {
    return this.isIntact;
  }

  unload(): void {
    this.unloads++;
  }

  missingPath(): string | undefined {
    return this.missing;
  }
}

/** Lets queued promise callbacks run without moving the fake clock. */
const flush = () => vi.advanceTimersByTimeAsync(0);

describe('PoolSupervisor', () => {
  const supervisors: PoolSupervisor[] = [];
  const make = (pools: FakePool[], opts: SupervisorOptions = {}) => {
    const s = new PoolSupervisor(pools, silentLogger(), { checkIntervalMs: 5_000, ...opts });
    supervisors.push(s);
    return s;
  };

  beforeEach(() => {
    vi.useFakeTimers({ now: new Date('2026-01-01T00:00:00Z') });
  });
  afterEach(async () => {
    for (const s of supervisors.splice(0)) await s.close();
    vi.useRealTimers();
  });

  it('configured → failed with the reason and the next retry → ready after the backoff', async () => {
    const p = new FakePool('a');
    p.outcomes = [new Error('pool a: /p/a does not exist')];
    const s = make([p]);
    expect(s.state('a')).toMatchObject({ phase: 'configured', failures: 0 });

    await s.start();
    const t0 = Date.now();
    expect(s.state('a')).toMatchObject({ phase: 'failed', reason: 'pool a: /p/a does not exist', failures: 1, nextRetryAt: t0 + 1_000 });
    expect(s.state('a').backend).toBeUndefined();
    expect(s.quota('a')).toBeUndefined();

    await vi.advanceTimersByTimeAsync(999);
    expect(p.loads).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(p.loads).toBe(2);
    expect(s.state('a')).toMatchObject({ phase: 'ready', failures: 0, backend: 'xfs-project' });
    expect(s.state('a').reason).toBeUndefined();
    expect(s.state('a').nextRetryAt).toBeUndefined();
    expect(s.quota('a')).toBe(quota);
  });

  it('backs off 1 s doubling up to the cap, and a success resets it', async () => {
    const p = new FakePool('a');
    p.outcomes = Array.from({ length: 6 }, (_, i) => new Error(`no ${i}`));
    const s = make([p], { retryInitialMs: 1_000, retryMaxMs: 5_000 });
    await s.start();
    const waits: number[] = [];
    while (s.state('a').phase === 'failed') {
      const wait = s.state('a').nextRetryAt! - Date.now();
      waits.push(wait);
      await vi.advanceTimersByTimeAsync(wait);
    }
    expect(waits).toEqual([1_000, 2_000, 4_000, 5_000, 5_000, 5_000]);
    expect(s.state('a')).toMatchObject({ phase: 'ready', failures: 0 });
    expect(p.loads).toBe(7);

    // Gone and failing again: the backoff starts over at 1 s.
    p.isIntact = false;
    p.outcomes = [new Error('gone')];
    while (p.unloads === 0) await vi.advanceTimersByTimeAsync(100);
    expect(s.state('a')).toMatchObject({ phase: 'failed', reason: 'gone', failures: 1 });
    expect(s.state('a').nextRetryAt! - Date.now()).toBe(1_000);
  });

  it("a pool's own shorter cap (one that waits for a mount) wins over the supervisor's; a longer one does not", async () => {
    const waitsOf = async (p: FakePool) => {
      const s = make([p], { retryInitialMs: 1_000, retryMaxMs: 8_000 });
      await s.start();
      const waits: number[] = [];
      while (s.state(p.name).phase === 'failed') {
        const wait = s.state(p.name).nextRetryAt! - Date.now();
        waits.push(wait);
        await vi.advanceTimersByTimeAsync(wait);
      }
      return waits;
    };
    const mount = Object.assign(new FakePool('m'), { retryMaxMs: 3_000 });
    mount.outcomes = Array.from({ length: 5 }, () => new Error('not mounted'));
    expect(await waitsOf(mount)).toEqual([1_000, 2_000, 3_000, 3_000, 3_000]);
    const longer = Object.assign(new FakePool('l'), { retryMaxMs: 60_000 });
    longer.outcomes = Array.from({ length: 5 }, () => new Error('no'));
    expect(await waitsOf(longer)).toEqual([1_000, 2_000, 4_000, 8_000, 8_000]);
  });

  it('reads never prepare: state() and settled() leave a failed pool alone', async () => {
    const p = new FakePool('a');
    p.outcomes = [new Error('blank device, not allowed yet')];
    const s = make([p], { retryInitialMs: 60_000 });
    await s.start();
    for (let i = 0; i < 20; i++) {
      expect(s.state('a').phase).toBe('failed');
      expect((await s.settled('a', 100)).phase).toBe('failed');
    }
    expect(p.loads).toBe(1);
  });

  it('settled() waits for a preparation under way, up to its limit, and starts none', async () => {
    const p = new FakePool('a');
    let finish!: () => void;
    p.outcomes = [new Error('not yet'), new Promise<void>((r) => (finish = r))];
    const s = make([p]);
    await s.start();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(s.state('a').phase).toBe('preparing');

    const slow = s.settled('a', 2_000);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(await slow).toMatchObject({ phase: 'preparing' });

    const waiting = s.settled('a', 2_000);
    finish();
    expect(await waiting).toMatchObject({ phase: 'ready' });
    expect(p.loads).toBe(2);
  });

  it('ensure(): a call prepares a failed pool now; concurrent calls share one preparation', async () => {
    const p = new FakePool('a');
    let finish!: () => void;
    p.outcomes = [new Error('not yet'), new Promise<void>((r) => (finish = r))];
    const s = make([p], { retryInitialMs: 60_000 });
    await s.start();
    const calls = [s.ensure('a'), s.ensure('a'), s.ensure('a')];
    expect(s.state('a').phase).toBe('preparing');
    await flush();
    finish();
    expect(await Promise.all(calls)).toEqual([{ quota }, { quota }, { quota }]);
    expect(p.loads).toBe(2);
    // Ready and intact: nothing is prepared again.
    await s.ensure('a');
    expect(p.loads).toBe(2);
  });

  it('ensure() on a failed pool rejects with what the preparation failed with, and the retry stays scheduled', async () => {
    const p = new FakePool('a');
    const why = new Error('pool a: /dev/x holds a ext4 filesystem');
    p.outcomes = [new Error('first'), why];
    const s = make([p]);
    await s.start();
    await expect(s.ensure('a')).rejects.toBe(why);
    expect(s.state('a')).toMatchObject({ phase: 'failed', reason: why.message, failures: 2 });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(s.state('a').phase).toBe('ready');
  });

  it('vanished: a ready pool whose metadata is gone is unloaded and goes back to preparing, then failed, then ready', async () => {
    const p = new FakePool('a');
    const s = make([p]);
    await s.start();
    expect(s.state('a').phase).toBe('ready');

    p.isIntact = false;
    let finish!: () => void;
    p.outcomes = [new Promise<void>((r) => (finish = r))];
    await vi.advanceTimersByTimeAsync(5_000);
    expect(p.unloads).toBe(1);
    expect(s.state('a').phase).toBe('preparing');
    expect(s.quota('a')).toBeUndefined();
    finish();
    await flush();
    expect(s.state('a').phase).toBe('ready');

    // Found by a call instead of the check: the same transition, at once.
    p.outcomes = [new Error('pool a: /p/a does not exist')];
    await expect(s.ensure('a')).rejects.toThrow('does not exist');
    expect(p.unloads).toBe(2);
    expect(s.state('a')).toMatchObject({ phase: 'failed', failures: 1 });
    p.isIntact = true;
    await vi.advanceTimersByTimeAsync(1_000);
    expect(s.state('a').phase).toBe('ready');
    expect(p.loads).toBe(4);
  });

  it('a missing path that appears is tried at once; the watch goes when a preparation starts', async () => {
    const p = new FakePool('a');
    p.missing = '/dev/disk/by-id/nvme-1';
    p.outcomes = [new Error('device is not there')];
    const watches: Array<{ path: string; fire: () => void; closed: boolean }> = [];
    const s = make([p], {
      retryInitialMs: 60_000,
      watch: (path, onAppear) => {
        const w = { path, fire: onAppear, closed: false };
        watches.push(w);
        return { close: () => (w.closed = true) };
      },
    });
    await s.start();
    expect(watches.map((w) => [w.path, w.closed])).toEqual([['/dev/disk/by-id/nvme-1', false]]);
    p.missing = undefined;
    watches[0]!.fire();
    await flush();
    expect(s.state('a').phase).toBe('ready');
    expect(p.loads).toBe(2);
    // The timed retry was cancelled with it.
    await vi.advanceTimersByTimeAsync(120_000);
    expect(p.loads).toBe(2);
  });

  it('close() stops retries and checks, and later calls are refused', async () => {
    const a = new FakePool('a');
    const b = new FakePool('b');
    a.outcomes = [new Error('no')];
    const s = make([a, b]);
    await s.start();
    expect(vi.getTimerCount()).toBe(2); // a's retry, b's check
    await s.close();
    expect(vi.getTimerCount()).toBe(0);
    b.isIntact = false;
    await vi.advanceTimersByTimeAsync(600_000);
    expect(a.loads).toBe(1);
    expect(b.unloads).toBe(0);
    await expect(s.ensure('a')).rejects.toThrow('shutting down');
    await s.close();
  });

  it('close() waits for a preparation under way', async () => {
    const p = new FakePool('a');
    let finish!: () => void;
    p.outcomes = [new Error('no'), new Promise<void>((r) => (finish = r))];
    const s = make([p]);
    await s.start();
    await vi.advanceTimersByTimeAsync(1_000);
    let closed = false;
    const closing = s.close().then(() => (closed = true));
    await flush();
    expect(closed).toBe(false);
    finish();
    await closing;
    expect(s.state('a').phase).toBe('ready');
  });

  it('timers do not keep the process alive', async () => {
    const p = new FakePool('a');
    p.outcomes = [new Error('no')];
    const unref = vi.spyOn(globalThis, 'setTimeout');
    const s = make([p]);
    await s.start();
    const timer = unref.mock.results.at(-1)!.value as NodeJS.Timeout;
    expect(timer.hasRef()).toBe(false);
    unref.mockRestore();
  });
});
