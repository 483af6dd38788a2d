// What a child process prints (the daemon's pino lines), kept for the caller: the text, the number of
// lines, optionally each line parsed with the time it arrived, and waits on all three. No vitest here:
// bench/ uses it too.
import type { Readable } from 'node:stream';

/** A pino line of the daemon as parsed here; `at` is when this process read it (nowMs clock). */
export interface LogEntry {
  at: number;
  msg?: string;
  level?: number;
  method?: string;
  code?: string;
  ms?: number;
  name?: string;
  volume_id?: string;
  cmd?: string;
  call?: string;
  file?: string;
  [field: string]: unknown;
}

export interface ProcessLogOptions {
  /** Parse every line into `entries` (costs memory; the bench reads the daemon's timings from them). */
  keepEntries?: boolean;
  /** Stop adding to text() beyond this many characters; lines are still counted and parsed. */
  maxTextChars?: number;
}

/** Milliseconds on a monotonic clock, fractional. */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

type Pattern = string | RegExp;

interface Waiter {
  done(): boolean;
  resolve(): void;
}

export class ProcessLog {
  readonly entries: LogEntry[] = [];
  private out = '';
  private lineCount = 0;
  private readonly partial = new Map<Readable, string>();
  private readonly waiters = new Set<Waiter>();

  constructor(private readonly opts: ProcessLogOptions = {}) {}

  /** Read `stream` into this log (both of a child's pipes go into one log). */
  attach(stream: Readable): void {
    this.partial.set(stream, '');
    stream.on('data', (d: Buffer) => this.add(stream, d.toString()));
  }

  text(): string {
    return this.out;
  }

  lines(): number {
    return this.lineCount;
  }

  /**
   * Wait until the text matches `pattern` and return the text; on timeout an error that shows its tail.
   * A line written while serving a call can reach us after the reply does: wait for it, never assume it.
   */
  waitFor(pattern: Pattern, ms = 5_000): Promise<string> {
    const matches = () => (typeof pattern === 'string' ? this.out.includes(pattern) : new RegExp(pattern.source, pattern.flags.replace('g', '')).test(this.out));
    return this.until(matches, ms).then((ok) => {
      if (!ok) throw new Error(`no log line matching ${String(pattern)} within ${ms} ms; the logs end with:\n${this.out.slice(-3000)}`);
      return this.out;
    });
  }

  /** Wait until `pred(entries)` holds; false on timeout. Needs keepEntries. */
  waitForEntries(pred: (entries: readonly LogEntry[]) => boolean, ms = 5_000): Promise<boolean> {
    if (!this.opts.keepEntries) throw new Error('waitForEntries needs a log made with keepEntries');
    return this.until(() => pred(this.entries), ms);
  }

  /** Wait until `n` lines have been printed in all; false on timeout or when `gone` settles first. */
  waitLines(n: number, ms: number, gone?: Promise<unknown>): Promise<boolean> {
    return this.until(() => this.lineCount >= n, ms, gone);
  }

  private until(cond: () => boolean, ms: number, gone?: Promise<unknown>): Promise<boolean> {
    if (cond()) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      let settled = false;
      const finish = (ok: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve(ok);
      };
      const waiter: Waiter = { done: cond, resolve: () => finish(true) };
      const timer = Number.isFinite(ms) ? setTimeout(() => finish(false), ms) : undefined;
      this.waiters.add(waiter);
      void gone?.then(() => finish(cond()));
    });
  }

  private add(stream: Readable, chunk: string): void {
    const max = this.opts.maxTextChars ?? Infinity;
    if (this.out.length < max) this.out += chunk;
    const text = this.partial.get(stream)! + chunk;
    const lines = text.split('\n');
    this.partial.set(stream, lines.pop()!);
    this.lineCount += lines.length;
    if (this.opts.keepEntries) {
      const at = nowMs();
      for (const l of lines) {
        try {
          this.entries.push({ ...(JSON.parse(l) as Record<string, unknown>), at });
        } catch {
          this.entries.push({ msg: l, at });
        }
      }
    }
    for (const w of [...this.waiters]) if (w.done()) w.resolve();
  }
}
