// How busy the machine is and what our processes use: CPU jiffies from /proc, memory from
// /proc/<pid>/status, and a wait for a quiet machine before measuring.
import { readFileSync, readdirSync } from 'node:fs';
import { envInt, sleep } from './common.js';

export interface SystemCpu {
  /** user+nice+system: what processes and kernel threads use. */
  proc: number;
  /** irq+softirq, nobody's in particular. */
  irq: number;
  /** The hypervisor gave the CPU to someone else. */
  steal: number;
  busy: number;
  total: number;
}

/** System-wide CPU jiffies from /proc/stat. */
export function systemCpu(): SystemCpu {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
  const proc = user + nice + system;
  return { proc, irq: irq + softirq, steal, busy: proc + irq + softirq, total: proc + idle + iowait + irq + softirq + steal };
}

/** The fields of /proc/<pid>/stat after the command name. */
function statFields(pid: string | number): string[] {
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return st.slice(st.lastIndexOf(')') + 2).split(' ');
}

/** CPU jiffies of all kernel threads now alive (children of kthreadd: loop workers, kworkers, jbd2...). */
export function kernelThreadsCpu(): number {
  let sum = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const f = statFields(pid);
      if (pid === '2' || f[1] === '2') sum += Number(f[11]) + Number(f[12]);
    } catch {
      // gone meanwhile
    }
  }
  return sum;
}

/** CPU jiffies used by a process and its waited-for children (utime+stime+cutime+cstime). */
export function processCpu(pid: number | 'self' = 'self'): number {
  try {
    // fields after the command: state(0) ... utime(11) stime(12) cutime(13) cstime(14)
    const f = statFields(pid);
    return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  } catch {
    return 0;
  }
}

/** A `... kB` field of /proc/<pid>/status in bytes (VmRSS, VmHWM, ...); NaN when unreadable. */
export function procStatusBytes(pid: number, field: string): number {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Fraction of all CPUs busy over `ms`. */
export async function cpuBusy(ms = 1000): Promise<number> {
  const a = systemCpu();
  await sleep(ms);
  const b = systemCpu();
  return (b.busy - a.busy) / Math.max(1, b.total - a.total);
}

export interface QuietReport {
  cpu_busy_before: number;
  waited_s: number;
  quiet: boolean;
}

/**
 * The machine is shared (other people's tests and builds): wait until it is quiet, at most
 * BENCH_QUIET_WAIT seconds (default 120), quiet meaning at most BENCH_QUIET_BUSY (default 0.15) of all
 * CPUs busy over a second. Says how it went; the benchmark runs either way.
 */
export async function waitQuiet(log: (line: string) => void): Promise<QuietReport> {
  const maxWait = envInt('BENCH_QUIET_WAIT', 120, 0);
  const threshold = Number(process.env.BENCH_QUIET_BUSY ?? 0.15);
  const started = Date.now();
  let busy = await cpuBusy(1000);
  let said = false;
  while (busy > threshold && (Date.now() - started) / 1000 < maxWait) {
    if (!said) log(`  machine busy (${(busy * 100).toFixed(0)}% of CPUs); waiting up to ${maxWait} s for it to settle`);
    said = true;
    busy = await cpuBusy(2000);
  }
  return { cpu_busy_before: busy, waited_s: (Date.now() - started) / 1000, quiet: busy <= threshold };
}
