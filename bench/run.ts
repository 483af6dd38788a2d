// Benchmark runner: `node dist-bench/bench/run.js [name...]` (npm run bench builds first and runs them all).
// Each benchmark gets its own scratch directory under the temp dir and its own daemon; afterwards
// everything is cleaned up (daemon stopped, mounts unmounted, loop devices detached, directory removed),
// also on failure or Ctrl-C. Results: bench/results/<name>.json and <name>.svg.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { RESULTS_DIR } from './lib/common.js';
import type { BenchModule } from './lib/result.js';
import { cleanupAll, openBench } from './lib/scratch.js';
import { roundDeep } from './lib/stats.js';
import { renderSvg } from './lib/svg.js';
import { formatTable } from './lib/table.js';
import { waitQuiet } from './lib/usage.js';
import { writeSummary } from './summary.js';

/** The benchmarks, in the order they run when none are named. */
const MODULES: Record<string, () => Promise<BenchModule>> = {
  anchors: () => import('./anchors.js'),
  cycle: () => import('./cycle.js'),
  'loop-io': () => import('./loop-io.js'),
  prealloc: () => import('./prealloc.js'),
  snapshot: () => import('./snapshot.js'),
  throughput: () => import('./throughput.js'),
};
export const BENCHMARKS = Object.keys(MODULES);

const USAGE =
  `usage: node dist-bench/bench/run.js [${BENCHMARKS.join('|')} ...]   (none: all; \`summary\` only rebuilds results/summary.*)\n` +
  'env: BENCH_CYCLES (200), BENCH_WARMUP (20), BENCH_ATTRIBUTION_CYCLES, BENCH_LOOP_MIB (1024), BENCH_LOOP_REPS (9), BENCH_DROP_CACHES (1),\n' +
  '     BENCH_PREALLOC_GIB (10), BENCH_PREALLOC_RUNS (3), BENCH_PREALLOC_FULL_RUNS (1), BENCH_PREALLOC_SPARSE_RUNS (3),\n' +
  '     BENCH_SNAP_GIB (1,10), BENCH_SNAP_REPS_REFLINK (5), BENCH_SNAP_REPS_COPY (1),\n' +
  '     BENCH_CREATES (1000), BENCH_INFLIGHT (16), BENCH_THROUGHPUT_WARMUP (64), BENCH_RESTARTS (3), BENCH_CREATE_MIB (16), BENCH_PROFILE (auto|0|1),\n' +
  '     BENCH_QUIET_WAIT (120 s to wait for an idle machine), BENCH_QUIET_BUSY (0.15),\n' +
  '     BENCH_ANCHOR_ROUNDS (3), BENCH_ANCHOR_FS (ext4,xfs), BENCH_ANCHOR_CACHE (/var/cache/hpp-bench), BENCH_ANCHOR_GIT_HPP, BENCH_ANCHOR_GIT_CHP\n';

const say = (line: string) => process.stdout.write(`${line}\n`);
const pc = (x: number) => `${(x * 100).toFixed(0)}%`;

/** Run one benchmark and write its results; false when it failed or left something behind. */
async function runOne(name: string, mod: BenchModule): Promise<boolean> {
  process.stdout.write(`\n== ${name}: ${mod.title}\n`);
  const quiet = await waitQuiet(say);
  if (!quiet.quiet) say(`  still ${(quiet.cpu_busy_before * 100).toFixed(0)}% busy after ${quiet.waited_s.toFixed(0)} s; measuring anyway (figures will be noisy)`);
  const bench = openBench(name);
  let ok = true;
  let result;
  let load;
  const started = Date.now();
  try {
    bench.startLoadWatch();
    result = await mod.run(bench, say);
    load = { ...quiet, ...bench.loadReport()! };
  } catch (err) {
    ok = false;
    process.stderr.write(`benchmark ${name} failed: ${(err as Error).stack ?? String(err)}\n`);
    const tail = bench.daemons.at(-1)?.logs().trim().split('\n').slice(-15).join('\n');
    if (tail) process.stderr.write(`last daemon log lines:\n${tail}\n`);
  }
  const leaks = await bench.cleanup();
  const seconds = (Date.now() - started) / 1000;
  if (leaks.length > 0) {
    ok = false;
    process.stderr.write(`benchmark ${name} left things behind:\n  ${leaks.join('\n  ')}\n`);
  }
  if (!result || !load) return ok;

  const othersBusy = load.cpu_busy_not_ours_during;
  if (othersBusy > 0.1) {
    result.summary.push(`WARNING: other processes used ${pc(othersBusy)} of the CPUs during this run; figures are pessimistic`);
  }
  if (load.cpu_steal > 0.05) result.summary.push(`WARNING: the hypervisor stole ${pc(load.cpu_steal)} of the CPUs during this run`);
  result.summary.push(`CPU during the run: busy ${pc(load.cpu_busy_during)} of ${bench.facts.cpus} CPUs (this benchmark ${pc(load.cpu_ours)}, kernel threads ${pc(load.cpu_kernel_threads)}, irq ${pc(load.cpu_irq_softirq)}, other processes ${pc(othersBusy)}), steal ${pc(load.cpu_steal)}`);
  for (const t of result.tables) process.stdout.write(`\n${formatTable(t)}\n`);
  process.stdout.write('\n');
  for (const s of result.summary) process.stdout.write(`${s}\n`);

  const out = roundDeep({
    benchmark: name,
    title: mod.title,
    goal: result.goal,
    headlines: result.headlines,
    summary: result.summary,
    config: result.config,
    machine: bench.facts,
    load,
    figures: result.figures,
    tables: result.tables,
    run_seconds: seconds,
    cleanup: leaks.length === 0 ? 'clean' : leaks,
  });
  const jsonFile = path.join(RESULTS_DIR, `${name}.json`);
  writeFileSync(jsonFile, `${JSON.stringify(out, null, 2)}\n`);
  const f = bench.facts;
  const chart = {
    ...result.chart,
    notes: [
      ...(result.chart.notes ?? []),
      `CPU during the run (share of ${f.cpus} CPUs): busy ${pc(load.cpu_busy_during)} = this benchmark ${pc(load.cpu_ours)}, kernel threads ${pc(load.cpu_kernel_threads)}, irq ${pc(load.cpu_irq_softirq)}, other processes ${pc(othersBusy)}; steal ${pc(load.cpu_steal)}.`,
    ],
    subtitle: `${f.date.slice(0, 16).replace('T', ' ')} UTC · ${f.cpu} (${f.cpus} CPUs) · Linux ${f.kernel} · Node ${f.node} · temp dir on ${f.tmp_fs_type} · driver ${f.driver_commit}${f.driver_tree_dirty ? '+dirty' : ''}`,
  };
  const svgFile = path.join(RESULTS_DIR, `${name}.svg`);
  writeFileSync(svgFile, renderSvg(chart));
  process.stdout.write(`wrote ${path.relative(process.cwd(), jsonFile)}, ${path.relative(process.cwd(), svgFile)} (${seconds.toFixed(1)} s)\n`);
  return ok;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.length === 1 && args[0] === 'summary') {
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeSummary();
    return 0;
  }
  const unknown = args.filter((a) => !BENCHMARKS.includes(a));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark(s): ${unknown.join(', ')}; known: ${BENCHMARKS.join(', ')}\n`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('the benchmarks mount and attach loop devices: run them as root\n');
    return 2;
  }
  mkdirSync(RESULTS_DIR, { recursive: true });
  let failed = 0;
  for (const name of args.length > 0 ? args : BENCHMARKS) {
    if (!(await runOne(name, await MODULES[name]!()))) failed++;
  }
  process.stdout.write('\n== summary of bench/results (every result present, against the goals)\n');
  writeSummary();
  return failed > 0 ? 1 : 0;
}

let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`\n${sig}: cleaning up\n`);
    void cleanupAll().finally(() => process.exit(130));
  });
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    await cleanupAll();
    process.exit(1);
  },
);
