import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { statusOf } from '../../src/csi/status.js';
import { DriverError } from '../../src/errors.js';
import { KeyedLock } from '../../src/util/keyed-lock.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A task that records when it ran and waits until released. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

describe('KeyedLock', () => {
  it('serialises work on the same key, in arrival order', async () => {
    const lock = new KeyedLock();
    const events: string[] = [];
    let inside = 0;
    let maxInside = 0;
    const task = (id: number) =>
      lock.withKey('k', async () => {
        inside++;
        maxInside = Math.max(maxInside, inside);
        events.push(`start ${id}`);
        await sleep(5);
        events.push(`end ${id}`);
        inside--;
        return id;
      });
    const results = await Promise.all([1, 2, 3, 4, 5].map(task));
    expect(results).toEqual([1, 2, 3, 4, 5]);
    expect(maxInside).toBe(1);
    expect(events).toEqual([1, 2, 3, 4, 5].flatMap((i) => [`start ${i}`, `end ${i}`]));
    expect(lock.isHeld('k')).toBe(false);
  });

  it('runs different keys in parallel', async () => {
    const lock = new KeyedLock();
    const a = gate();
    const b = gate();
    const started: string[] = [];
    const pa = lock.withKey('a', async () => {
      started.push('a');
      await a.opened;
    });
    const pb = lock.withKey('b', async () => {
      started.push('b');
      await b.opened;
    });
    await sleep(10);
    // Both are inside at once, although neither has finished.
    expect(started.sort()).toEqual(['a', 'b']);
    expect(lock.isHeld('a') && lock.isHeld('b')).toBe(true);
    a.open();
    b.open();
    await Promise.all([pa, pb]);
    expect(lock.isHeld('a') || lock.isHeld('b')).toBe(false);
  });

  it('releases the key when the work throws', async () => {
    const lock = new KeyedLock();
    await expect(lock.withKey('k', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(lock.isHeld('k')).toBe(false);
    expect(await lock.withKey('k', async () => 'next')).toBe('next');
  });

  it('a waiter gets ABORTED after maxWait, and the queue behind it still works in order', async () => {
    const lock = new KeyedLock(200);
    const holder = gate();
    const order: string[] = [];
    const first = lock.withKey('k', async () => {
      order.push('first');
      await holder.opened;
      order.push('first done');
    });
    const t0 = Date.now();
    const second = lock.withKey('k', async () => {
      order.push('second (must not run)');
    });
    // Queued behind the second waiter while it still waits; its own deadline is later.
    await sleep(100);
    const third = lock.withKey('k', async () => {
      order.push('third');
    });
    const err = await second.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DriverError);
    expect((err as DriverError).kind).toBe('busy');
    expect(statusOf(err)).toBe(status.ABORTED);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    // The holder still holds: nobody got in while it runs.
    expect(order).toEqual(['first']);
    expect(lock.isHeld('k')).toBe(true);
    holder.open();
    await first;
    await third;
    expect(order).toEqual(['first', 'first done', 'third']);
    expect(lock.isHeld('k')).toBe(false);
    // Nothing is left behind: new work on the key runs at once.
    expect(await lock.withKey('k', async () => 'fresh')).toBe('fresh');
  });

  it('a waiter that timed out does not let a later one in before the holder is done', async () => {
    const lock = new KeyedLock(100);
    const holder = gate();
    let holderDone = false;
    const first = lock.withKey('k', async () => {
      await holder.opened;
      holderDone = true;
    });
    await expect(lock.withKey('k', async () => 'x')).rejects.toMatchObject({ kind: 'busy' });
    // A new caller after the timeout queues behind the holder, not behind the aborted waiter's slot.
    let sawHolderDone: boolean | undefined;
    const late = lock.withKey('k', async () => {
      sawHolderDone = holderDone;
    });
    await sleep(10);
    expect(sawHolderDone).toBeUndefined();
    holder.open();
    await Promise.all([first, late]);
    expect(sawHolderDone).toBe(true);
    expect(lock.isHeld('k')).toBe(false);
  });

  it('withKeys takes several keys without deadlock whatever the order', async () => {
    const lock = new KeyedLock(2000);
    const log: string[] = [];
    const run = (keys: string[], id: string) =>
      lock.withKeys(keys, async () => {
        log.push(`in ${id}`);
        await sleep(5);
        log.push(`out ${id}`);
      });
    await Promise.all([run(['a', 'b'], '1'), run(['b', 'a'], '2'), run(['b', 'c', 'a'], '3'), run(['a', 'a'], '4')]);
    // Every pair shares a key, so they never overlap.
    for (let i = 0; i < log.length; i += 2) expect(log[i + 1]!.slice(4)).toBe(log[i]!.slice(3));
    for (const k of ['a', 'b', 'c']) expect(lock.isHeld(k)).toBe(false);
  });

  it('withKeys gives back the keys it holds when a later key times out', async () => {
    const lock = new KeyedLock(30);
    const holder = gate();
    const hold = lock.withKey('b', () => holder.opened);
    await expect(lock.withKeys(['a', 'b'], async () => 'never')).rejects.toMatchObject({ kind: 'busy' });
    // 'a' was released although 'b' was never obtained.
    expect(lock.isHeld('a')).toBe(false);
    expect(await lock.withKey('a', async () => 'a free')).toBe('a free');
    holder.open();
    await hold;
  });
});
