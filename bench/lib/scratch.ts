// A scratch area per benchmark: a fresh directory under the temp dir, daemons started in it through the
// tests' launcher, CPU accounting over the run, and a cleanup that never leaks mounts or loop devices.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchDaemon, type Daemon } from '../../test/helpers/daemon.js';
import { MiB, NODE_NAME, POOL_NAME, sleep } from './common.js';
import { leaksUnder, loopsUnder, mountPointsUnder } from './leaks.js';
import { machineFacts, type MachineFacts } from './machine.js';
import { sh, toolError } from './tools.js';
import { kernelThreadsCpu, processCpu, systemCpu, type SystemCpu } from './usage.js';

export interface BenchDaemonOptions {
  /** A directory, or `MOUNT:device=/dev/loopN` for a pool the daemon formats and mounts itself. */
  pool: string;
  logLevel?: string;
  nodeArgs?: string[];
  args?: string[];
  env?: Record<string, string>;
}

export interface LoadReport {
  loadavg_1m_start: number;
  loadavg_1m_end: number;
  /** Fractions of all CPUs over the run. */
  cpu_busy_during: number;
  cpu_ours: number;
  cpu_kernel_threads: number;
  cpu_irq_softirq: number;
  cpu_steal: number;
  /** Processes that are neither this benchmark (runner, daemons, their tools) nor kernel threads. */
  cpu_busy_not_ours_during: number;
}

/** Every open scratch area, so a signal can clean them up too. */
const open = new Set<Bench>();

export async function cleanupAll(): Promise<void> {
  for (const b of [...open]) await b.cleanup();
}

export function openBench(name: string): Bench {
  const b = new Bench(name);
  open.add(b);
  return b;
}

export class Bench {
  readonly dir: string;
  readonly daemons: Daemon[] = [];
  readonly facts: MachineFacts;
  private load0?: { sys: SystemCpu; self: number; kthreads: number; loadavg: number };

  constructor(readonly name: string) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), `hpp-bench-${name}-`));
    this.facts = machineFacts(this.dir);
  }

  mkdir(rel: string): string {
    const p = path.join(this.dir, rel);
    mkdirSync(p, { recursive: true });
    return p;
  }

  /**
   * Start the built daemon on `<dir>/csi-N.sock` with one pool and wait until it serves. Its log lines
   * (pino JSON) are kept and parsed, so a benchmark can read the daemon's own timings.
   */
  async startDaemon({ pool, logLevel = 'info', nodeArgs = [], args = [], env = {} }: BenchDaemonOptions): Promise<Daemon> {
    const d = await launchDaemon({
      socket: path.join(this.dir, `csi-${this.daemons.length}.sock`),
      node: NODE_NAME,
      logLevel,
      args: ['--pool', `${POOL_NAME}=${pool}`, ...args],
      nodeArgs,
      env,
      keepEntries: true,
      maxTextChars: 4 * MiB,
      // channelz off: per-call bookkeeping nobody reads here (the daemon turns it off too).
      channel: { 'grpc.enable_channelz': 0 },
      calls: { deadlineMs: 120_000 },
    });
    this.daemons.push(d);
    return d;
  }

  /** Start counting CPU: the whole machine's and ours (this process, its tools, the daemons). */
  startLoadWatch(): void {
    this.load0 = { sys: systemCpu(), self: processCpu(), kthreads: kernelThreadsCpu(), loadavg: os.loadavg()[0]! };
  }

  /** CPU busy during the run, and the part of it that was not us (other people's work). */
  loadReport(): LoadReport | undefined {
    const l0 = this.load0;
    if (!l0) return undefined;
    // Daemons already stopped were reaped by this process: their time is in its cutime/cstime.
    const alive = this.daemons.filter((d) => d.alive());
    const sys = systemCpu();
    const total = Math.max(1, sys.total - l0.sys.total);
    const ours = processCpu() - l0.self + alive.reduce((a, d) => a + processCpu(d.pid), 0);
    const kthreads = Math.max(0, kernelThreadsCpu() - l0.kthreads);
    const d = (k: keyof SystemCpu) => (sys[k] - l0.sys[k]) / total;
    return {
      loadavg_1m_start: l0.loadavg,
      loadavg_1m_end: os.loadavg()[0]!,
      cpu_busy_during: d('busy'),
      cpu_ours: ours / total,
      cpu_kernel_threads: kthreads / total,
      cpu_irq_softirq: d('irq'),
      cpu_steal: d('steal'),
      cpu_busy_not_ours_during: Math.max(0, d('proc') - (ours + kthreads) / total),
    };
  }

  /**
   * Stop the daemons, unmount everything below the directory (deepest first), detach every loop device
   * whose backing file is below it, and remove it. Returns what could not be cleaned; safe to call twice.
   */
  async cleanup(): Promise<string[]> {
    if (!open.has(this)) return [];
    open.delete(this);
    const problems: string[] = [];
    for (const d of this.daemons) {
      try {
        await d.stop(10_000);
      } catch (err) {
        problems.push(`stop daemon: ${(err as Error).message}`);
      }
    }
    for (const m of mountPointsUnder(this.dir).sort((a, b) => b.length - a.length)) {
      try {
        sh('umount', [m]);
      } catch {
        try {
          sh('umount', ['-l', m]);
        } catch (err) {
          problems.push(`umount ${m}: ${toolError(err)}`);
        }
      }
    }
    for (const l of loopsUnder(this.dir)) {
      try {
        sh('losetup', ['--detach', l.name]);
      } catch (err) {
        problems.push(`losetup -d ${l.name}: ${toolError(err)}`);
      }
    }
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch (err) {
      problems.push(`rm ${this.dir}: ${(err as Error).message}`);
    }
    // A detach of a busy device is deferred by the kernel (autoclear); give it a moment.
    for (let i = 0; i < 50 && leaksUnder(this.dir).length > 0; i++) await sleep(100);
    return [...problems, ...leaksUnder(this.dir)];
  }
}
