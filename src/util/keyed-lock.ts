import { busy } from '../errors.js';

/**
 * Serialises work per key (a volume, a name, a target path) while different keys run in parallel.
 * A waiter that cannot get the key within `maxWaitMs` gets ABORTED, the CSI answer for
 * "an operation on this volume is already in progress".
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  constructor(private readonly maxWaitMs = 60_000) {}

  async withKey<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(key);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Acquire several keys in a fixed (sorted) order so two callers never deadlock. */
  async withKeys<T>(keys: string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    const releases: Array<() => void> = [];
    try {
      for (const k of sorted) releases.push(await this.acquire(k));
      return await fn();
    } finally {
      for (const r of releases.reverse()) r();
    }
  }

  isHeld(key: string): boolean {
    return this.tails.has(key);
  }

  private async acquire(key: string): Promise<() => void> {
    const previous = this.tails.get(key);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous ? previous.then(() => mine) : mine;
    this.tails.set(key, tail);
    const done = () => {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
    if (!previous) return done;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      previous.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), this.maxWaitMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      // Give our slot up: those queued behind us still wait for `previous` through `tail`, and the
      // entry is dropped once `tail` settles (if nobody queued behind it by then).
      release();
      void tail.then(() => {
        if (this.tails.get(key) === tail) this.tails.delete(key);
      });
      throw busy(`an operation on ${key} is already in progress`);
    }
    return done;
  }
}
