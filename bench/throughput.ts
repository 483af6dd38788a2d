// Control-plane throughput and footprint with many volumes, on a host temp-dir pool:
//   1. BENCH_CREATES (1000) CreateVolume calls of Filesystem volumes with BENCH_INFLIGHT (16) in flight on
//      one gRPC channel (as csi-provisioner does with --worker-threads), then as many DeleteVolume calls
//      the same way: calls/s, client latency median/p99, daemon handler time, CPU per call;
//   2. the daemon's RSS (VmRSS) idle right after start and once the volumes exist;
//   3. restart with the volumes in place: from spawn until a ListVolumes returns all of them, after a
//      SIGTERM stop and after kill -9 (BENCH_RESTARTS each), with the daemon's own start-up timeline and,
//      for comparison, the same with an empty pool.
// When a throughput goal is missed (or BENCH_PROFILE=1; BENCH_PROFILE=0 never) an extra pass runs the
// daemon under --cpu-prof and reports where its CPU time goes.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { open as fopen, mkdir, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { VolumeRecord } from '../src/format/records.js';
import type { Daemon } from '../test/helpers/daemon.js';
import type { LogEntry } from '../test/helpers/process-log.js';
import { MOUNT_CAP, MiB, POOL_NAME, envInt, fmtBytes, nowMs, sleep } from './lib/common.js';
import type { BenchResult, Say } from './lib/result.js';
import type { Bench } from './lib/scratch.js';
import { stats, type Stats } from './lib/stats.js';
import { freeBytes, waitTrashEmpty } from './lib/storage.js';
import { COLORS, type Bar } from './lib/svg.js';
import type { Table } from './lib/table.js';
import { runTool } from './lib/tools.js';
import { procStatusBytes, processCpu } from './lib/usage.js';

export const title = 'CreateVolume/DeleteVolume throughput, memory and restart with many volumes';

const GOAL_RATE = 300;
const GOAL_P99_MS = 50;
const GOAL_RSS_BYTES = 120e6;
const GOAL_RESTART_MS = 2000;
const CLK_TCK = 100;

interface Concurrent {
  wall_ms: number;
  lat: number[];
  startAt: number[];
  rate: number;
  t0: number;
  t1: number;
}

interface SlowWindow {
  t_ms: number;
  calls: number;
  max_ms: number;
  over_goal: number;
}

interface Phase {
  calls: number;
  rate: number;
  wall_ms: number;
  /** The phase's start and end on the nowMs clock (the profile's clock too). */
  window: [number, number];
  slow: { over_goal: number; windows_total: number; windows_with_slow: number; windows: SlowWindow[] };
  client_ms: Stats;
  handler_ms: Stats | null;
  daemon_cpu_ms: number;
  daemon_cpu_ms_per_call: number;
  daemon_cpu_share: number;
  client_cpu_ms_per_call: number;
}

const TIMELINE = ['first_log_line', 'pool_prepared', 'pool_loaded', 'serving_csi', 'list_volumes_answered'] as const;
type TimelineKey = (typeof TIMELINE)[number];

interface TimedStart {
  d: Daemon;
  ms: number;
  list_calls: number;
  timeline_ms: Record<TimelineKey, number>;
  daemon_start_ms: number;
  stop_ms?: number;
}

/** strace -c counts per call, by system call. */
type SyscallCounts = Record<string, { per_call: number; errors_per_call: number }>;

/** Run fn(0..n-1) with `inflight` calls outstanding at any time; per-call latency and wall time. */
async function concurrent(n: number, inflight: number, fn: (i: number) => Promise<unknown>): Promise<Concurrent> {
  const lat = new Array<number>(n);
  const startAt = new Array<number>(n);
  const errors: Error[] = [];
  let next = 0;
  const t0 = nowMs();
  await Promise.all(
    Array.from({ length: Math.min(inflight, n) }, async () => {
      while (next < n) {
        const i = next++;
        const s = nowMs();
        startAt[i] = s - t0;
        try {
          await fn(i);
        } catch (err) {
          errors.push(err as Error);
        }
        lat[i] = nowMs() - s;
      }
    }),
  );
  const t1 = nowMs();
  const wall = t1 - t0;
  if (errors.length > 0) throw new Error(`${errors.length} of ${n} calls failed; first: ${errors[0]!.message}`);
  return { wall_ms: wall, lat, startAt, rate: n / (wall / 1000), t0, t1 };
}

/**
 * When the slow calls happened: the worst latency per 250 ms window of the phase, and how many windows
 * hold a call above the goal (periodic stalls show up as a few windows with many slow calls).
 */
function slowCalls(r: Concurrent, limitMs: number): Phase['slow'] {
  const BUCKET = 250;
  const buckets = new Map<number, SlowWindow>();
  let slow = 0;
  for (let i = 0; i < r.lat.length; i++) {
    const b = Math.floor(r.startAt[i]! / BUCKET);
    const e = buckets.get(b) ?? { t_ms: b * BUCKET, calls: 0, max_ms: 0, over_goal: 0 };
    e.calls++;
    e.max_ms = Math.max(e.max_ms, r.lat[i]!);
    if (r.lat[i]! >= limitMs) {
      e.over_goal++;
      slow++;
    }
    buckets.set(b, e);
  }
  const windows = [...buckets.values()].sort((a, b) => a.t_ms - b.t_ms);
  return { over_goal: slow, windows_total: windows.length, windows_with_slow: windows.filter((w) => w.over_goal > 0).length, windows };
}

/** The daemon's "rpc" log lines of one method for a set of names or volume ids: handler ms. */
function handlerTimes(entries: readonly LogEntry[], method: string, key: 'name' | 'volume_id', values: Set<string>): number[] {
  const out: number[] = [];
  for (const e of entries) if (e.msg === 'rpc' && e.method === method && e.code === 'OK' && values.has(e[key]!)) out.push(e.ms!);
  return out;
}

function createReq(name: string, bytes: number) {
  return {
    name,
    volume_capabilities: [MOUNT_CAP],
    capacity_range: { required_bytes: String(bytes), limit_bytes: '0' },
    parameters: { storagePool: POOL_NAME },
  };
}

/**
 * A timed phase: creates or deletes with `inflight` outstanding, plus the daemon's handler times and
 * the CPU that the daemon and this process (the client) used meanwhile.
 */
async function phase(d: Daemon, kind: 'create' | 'delete', names: string[], ids: string[], bytes: number, inflight: number): Promise<Phase> {
  const c = d.clients;
  const cpuD0 = processCpu(d.pid);
  const cpuC0 = process.cpuUsage();
  const r =
    kind === 'create'
      ? await concurrent(names.length, inflight, async (i) => {
          const res = await c.controller.CreateVolume(createReq(names[i]!, bytes));
          ids[i] = res.volume.volume_id;
        })
      : await concurrent(ids.length, inflight, (i) => c.controller.DeleteVolume({ volume_id: ids[i] }));
  const cpuDaemonMs = ((processCpu(d.pid) - cpuD0) * 1000) / CLK_TCK;
  const cu = process.cpuUsage(cpuC0);
  const cpuClientMs = (cu.user + cu.system) / 1000;
  const method = kind === 'create' ? 'CreateVolume' : 'DeleteVolume';
  const key = kind === 'create' ? 'name' : 'volume_id';
  const set = new Set(kind === 'create' ? names : ids);
  await d.log.waitForEntries((es) => handlerTimes(es, method, key, set).length >= set.size, 10_000);
  const handler = handlerTimes(d.log.entries, method, key, set);
  return {
    calls: set.size,
    rate: r.rate,
    wall_ms: r.wall_ms,
    window: [r.t0, r.t1],
    slow: slowCalls(r, GOAL_P99_MS),
    client_ms: stats(r.lat),
    handler_ms: handler.length ? stats(handler) : null,
    daemon_cpu_ms: cpuDaemonMs,
    daemon_cpu_ms_per_call: cpuDaemonMs / set.size,
    daemon_cpu_share: cpuDaemonMs / r.wall_ms,
    client_cpu_ms_per_call: cpuClientMs / set.size,
  };
}

/** Start a daemon on `pool` and time it from spawn until ListVolumes returns `expected` volumes. */
async function timedStart(bench: Bench, pool: string, expected: number): Promise<TimedStart> {
  const d = await bench.startDaemon({ pool, logLevel: 'info' });
  let listed = -1;
  let calls = 0;
  for (;;) {
    const r = await d.clients.controller.ListVolumes({ max_entries: 0, starting_token: '' });
    calls++;
    listed = (r.entries as unknown[]).length;
    if (listed >= expected) break;
    if (nowMs() - d.spawnedAt > 60_000) throw new Error(`after 60 s ListVolumes returns ${listed} of ${expected} volumes`);
    await sleep(5);
  }
  const ready = nowMs();
  const at = (pred: (e: LogEntry) => boolean) => d.log.entries.find(pred)?.at;
  const first = d.log.entries[0]?.at;
  const prepared = at((e) => typeof e.msg === 'string' && e.msg.startsWith('volume sizes are'));
  const loaded = at((e) => e.msg === 'pool loaded');
  const serving = at((e) => e.msg === 'serving CSI');
  const rel = (t: number | undefined) => (t === undefined ? NaN : t - d.spawnedAt);
  return {
    d,
    ms: ready - d.spawnedAt,
    list_calls: calls,
    timeline_ms: {
      first_log_line: rel(first),
      pool_prepared: rel(prepared),
      pool_loaded: rel(loaded),
      serving_csi: rel(serving),
      list_volumes_answered: ready - d.spawnedAt,
    },
    daemon_start_ms: d.log.entries.find((e) => e.msg === 'serving CSI')?.ms ?? NaN,
  };
}

/**
 * What this machine's disk allows, measured from this process with the daemon's write pattern: an
 * atomic small-file write (write, fsync, rename, fsync of the directory) with `inflight` outstanding,
 * with Node's default thread pool (the daemon's).
 */
async function fsyncCeiling(pool: string, inflight: number) {
  const dir = path.join(pool, 'reference-fsync');
  await mkdir(dir);
  const N = 400;
  const one = async (i: number | string) => {
    const tmp = path.join(dir, `.r${i}.tmp`);
    const fh = await fopen(tmp, 'w', 0o600);
    await fh.writeFile('{"version":1,"name":"reference","publications":{}}\n');
    await fh.sync();
    await fh.close();
    await rename(tmp, path.join(dir, `r${i}.json`));
    const dh = await fopen(dir, 'r');
    await dh.sync();
    await dh.close();
  };
  const seq: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t0 = nowMs();
    await one(`s${i}`);
    seq.push(nowMs() - t0);
  }
  const par = await concurrent(N, inflight, one);
  await rm(dir, { recursive: true, force: true });
  return { atomic_write_ms_sequential: stats(seq).median, atomic_writes_per_s_concurrent: par.rate, inflight, fsyncs_per_write: 2 };
}

/**
 * System calls the daemon (all its threads) makes per call: strace -f -c attached while `calls` calls
 * run one at a time. Null when strace is not installed. strace slows the daemon down; only the counts
 * are used.
 */
async function syscallsPerCall(d: Daemon, calls: number, fn: (i: number) => Promise<unknown>): Promise<SyscallCounts | null> {
  const out = path.join(path.dirname(d.socket), `strace-${d.pid}-${Date.now()}.txt`);
  let st: ChildProcess;
  try {
    st = spawn('strace', ['-f', '-c', '-o', out, '-p', String(d.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch {
    return null;
  }
  let stderr = '';
  st.stderr!.setEncoding('utf8').on('data', (x: string) => (stderr += x));
  const failed = new Promise<boolean>((resolve) => st.on('error', () => resolve(true)));
  const deadline = Date.now() + 5000;
  while (!/attached/.test(stderr)) {
    if (Date.now() > deadline || st.exitCode !== null || (await Promise.race([failed, sleep(20).then(() => false)]))) {
      st.kill('SIGKILL');
      return null;
    }
  }
  for (let i = 0; i < calls; i++) await fn(i);
  st.kill('SIGINT');
  await new Promise<void>((resolve) => (st.exitCode !== null ? resolve() : st.on('exit', () => resolve())));
  const counts: SyscallCounts = {};
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const m = line.trim().match(/^[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)$/);
    if (m && m[3] !== 'total') counts[m[3]!] = { per_call: Number(m[1]) / calls, errors_per_call: Number(m[2] ?? 0) / calls };
  }
  return counts;
}

const fmtNumber = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(1));

/** Native fs bindings as they appear in a profile (the JS side of each fs call, before libuv's thread pool). */
const FS_BINDINGS = /^(open|openFileHandle|close|fsync|fdatasync|mkdir|rmdir|rename|lstat|stat|fstat|statfs|chmod|fchmod|chown|fchown|lchown|utimes|futimes|lutimes|read|readFileUtf8|readdir|writeString|writeBuffer|writeBuffers|unlink|rm|access|realpath|readlink|symlink|copyFile|ftruncate|mkdtemp|existsSync)$/;

/**
 * The daemon's own capacity recompute (src/pools/capacity.ts) over the pool's records, run in this
 * process: CreateVolume holds the pool's capacity lock while it runs (at most every 2 s), so every
 * create in flight waits for it. An error instead when it fails.
 */
async function capacityRecomputeCost(pool: string): Promise<{ volumes: number; recompute_ms: number; samples_ms: number[] } | { error: string }> {
  try {
    // Loaded here, not above: only this pass needs the daemon's modules in this process.
    const { CapacityTracker } = await import('../src/pools/capacity.js');
    const { Pool } = await import('../src/pools/pool.js');
    const { linuxHost } = await import('../src/system/linux-host.js');
    const p = new Pool({ name: POOL_NAME, path: pool, useNamingPrefix: false, overcommitRatio: 1 }, linuxHost());
    const dir = path.join(pool, '.hpp/volumes');
    const recs = readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as VolumeRecord);
    const ms: number[] = [];
    for (let i = 0; i < 5; i++) {
      // A fresh tracker: its first figures() waits for the whole recompute (later ones run it in the background).
      const tracker = new CapacityTracker(p, () => recs);
      const t0 = nowMs();
      await tracker.figures();
      ms.push(nowMs() - t0);
    }
    return { volumes: recs.length, recompute_ms: stats(ms).median, samples_ms: ms };
  } catch (err) {
    return { error: String(err) };
  }
}

/** Summarise a --cpu-prof profile: self time by function and by area (driver, grpc, logging, node, GC). */
interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  startTime: number;
  samples: number[];
  timeDeltas?: number[];
}

interface ProfileSummary {
  total_ms: number;
  busy_ms: number;
  areas: Array<{ area: string; ms: number; share_of_busy: number }>;
  top_functions: Array<{ function: string; ms: number; share_of_busy: number }>;
}

function summariseProfile(file: string, window: [number, number]): ProfileSummary {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  const dt = prof.timeDeltas ?? [];
  // Sample times are CLOCK_MONOTONIC in µs, the clock of nowMs() here: keep the samples of the window.
  let t = prof.startTime;
  for (let i = 0; i < prof.samples.length; i++) {
    t += dt[i] ?? 0;
    if (window && (t / 1000 < window[0] || t / 1000 > window[1])) continue;
    const id = prof.samples[i]!;
    const next = dt[i + 1] ?? 0;
    self.set(id, (self.get(id) ?? 0) + next / 1000);
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const area = (url: string, fn: string) => {
    if (fn === '(garbage collector)') return 'garbage collection';
    if (fn === '(idle)') return 'idle';
    if (fn === '(program)') return 'native / V8 (program)';
    if (!url && FS_BINDINGS.test(fn)) return 'fs calls into libuv (native binding)';
    if (!url) return 'native / V8';
    if (url.includes('node_modules/@grpc') || url.includes('node_modules/@js-sdsl') || url.includes('protobufjs')) return 'gRPC (grpc-js, protobuf)';
    if (url.includes('node_modules/pino') || url.includes('thread-stream') || url.includes('sonic-boom')) return 'logging (pino)';
    if (url.includes('node_modules/prom-client')) return 'metrics (prom-client)';
    if (url.includes('/dist/')) return 'driver code';
    if (url.startsWith('node:')) return 'Node.js core (fs, net, http2, streams)';
    return 'other';
  };
  const byFn = new Map<string, number>();
  const byArea = new Map<string, number>();
  for (const [id, ms] of self) {
    const n = byId.get(id)!;
    const cf = n.callFrame;
    const where = cf.url ? `${cf.url.replace(/^.*\/(dist|node_modules)\//, '$1/').replace(/^file:\/\//, '')}:${cf.lineNumber + 1}` : '';
    const key = `${cf.functionName || '(anonymous)'} ${where}`.trim();
    byFn.set(key, (byFn.get(key) ?? 0) + ms);
    const a = area(cf.url, cf.functionName);
    byArea.set(a, (byArea.get(a) ?? 0) + ms);
  }
  const busy = total - (byArea.get('idle') ?? 0);
  const sorted = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]);
  return {
    total_ms: total,
    busy_ms: busy,
    areas: sorted(byArea).filter(([k]) => k !== 'idle').map(([k, ms]) => ({ area: k, ms, share_of_busy: ms / busy })),
    top_functions: sorted(byFn).filter(([k]) => !k.startsWith('(idle)')).slice(0, 15).map(([k, ms]) => ({ function: k, ms, share_of_busy: ms / busy })),
  };
}

export async function run(bench: Bench, log: Say): Promise<BenchResult> {
  const N = envInt('BENCH_CREATES', 1000);
  const INFLIGHT = envInt('BENCH_INFLIGHT', 16);
  const WARM = envInt('BENCH_THROUGHPUT_WARMUP', 64, 0);
  const RESTARTS = envInt('BENCH_RESTARTS', 3);
  const bytes = envInt('BENCH_CREATE_MIB', 16) * MiB;
  const pool = bench.mkdir('pool');
  // Directory pools reserve each volume's capacity from free space: keep the promises well inside it.
  if (N * bytes > freeBytes(pool) / 2) throw new Error(`${N} volumes of ${fmtBytes(bytes)} need more than half of the ${fmtBytes(freeBytes(pool))} free under ${pool}; lower BENCH_CREATE_MIB`);
  const names = Array.from({ length: N }, (_, i) => `tp-${String(i).padStart(5, '0')}`);
  // Dirty data of whatever ran before (another benchmark's big files) must not be flushed meanwhile.
  await runTool('sync', []);

  // Baseline: how long a start takes with an empty pool (fixed cost: Node, modules, gRPC bind).
  const empty: TimedStart[] = [];
  for (let i = 0; i < RESTARTS; i++) {
    const s = await timedStart(bench, pool, 0);
    empty.push(s);
    await s.d.stop();
  }

  // 1. Throughput on a fresh daemon.
  let d = (await timedStart(bench, pool, 0)).d;
  await sleep(1000);
  const rssIdle = procStatusBytes(d.pid, 'VmRSS');
  log(`  daemon pid ${d.pid}: RSS idle after start ${fmtBytes(rssIdle)}`);
  if (WARM > 0) {
    const wn = Array.from({ length: WARM }, (_, i) => `tp-warm-${i}`);
    const wids: string[] = [];
    await phase(d, 'create', wn, wids, bytes, INFLIGHT);
    await phase(d, 'delete', wn, wids, bytes, INFLIGHT);
    await waitTrashEmpty(pool);
  }
  const ids = new Array<string>(N);
  const creates = await phase(d, 'create', names, ids, bytes, INFLIGHT);
  log(`  ${N} creates, ${INFLIGHT} in flight: ${creates.rate.toFixed(0)}/s, median ${creates.client_ms.median.toFixed(2)} ms, p99 ${creates.client_ms.p99.toFixed(2)} ms`);
  await sleep(1000);
  const rssFull = procStatusBytes(d.pid, 'VmRSS');
  const hwm = procStatusBytes(d.pid, 'VmHWM');
  log(`  RSS with ${N} volumes ${fmtBytes(rssFull)} (peak so far ${fmtBytes(hwm)})`);
  const recompute = await capacityRecomputeCost(pool);
  const deletes = await phase(d, 'delete', names, ids, bytes, INFLIGHT);
  log(`  ${N} deletes, ${INFLIGHT} in flight: ${deletes.rate.toFixed(0)}/s, median ${deletes.client_ms.median.toFixed(2)} ms, p99 ${deletes.client_ms.p99.toFixed(2)} ms`);
  await waitTrashEmpty(pool);

  // 2. Restart with N volumes in place.
  const ids2 = new Array<string>(N);
  const recreate = await phase(d, 'create', names, ids2, bytes, INFLIGHT);
  const restarts: Record<'sigterm' | 'kill9', TimedStart[]> = { sigterm: [], kill9: [] };
  for (const how of ['sigterm', 'kill9'] as const) {
    for (let i = 0; i < RESTARTS; i++) {
      const t0 = nowMs();
      if (how === 'sigterm') await d.stop();
      else await d.kill();
      const stopMs = nowMs() - t0;
      const s = await timedStart(bench, pool, N);
      s.stop_ms = stopMs;
      restarts[how].push(s);
      d = s.d;
      log(`  restart after ${how === 'sigterm' ? 'SIGTERM' : 'kill -9'} (${i + 1}/${RESTARTS}): ${s.ms.toFixed(0)} ms until ListVolumes returned ${N} (stop took ${stopMs.toFixed(0)} ms)`);
    }
  }
  await sleep(1000);
  const rssAfterRestart = procStatusBytes(d.pid, 'VmRSS');
  const cleanupDeletes = await phase(d, 'delete', names, ids2, bytes, INFLIGHT);
  await waitTrashEmpty(pool);
  await d.stop();

  // 3. Where the CPU goes, when a throughput goal is missed (or asked for).
  const createsMet = creates.rate >= GOAL_RATE && creates.client_ms.p99 < GOAL_P99_MS;
  const profileWanted = process.env.BENCH_PROFILE === '1' || (process.env.BENCH_PROFILE !== '0' && !createsMet);
  let profile: { creates_per_s_under_profiler: number; deletes_per_s_under_profiler: number; creates: ProfileSummary; deletes: ProfileSummary } | null = null;
  let threadpool: { size: number; creates: Phase; deletes: Phase } | null = null;
  let reference: Awaited<ReturnType<typeof fsyncCeiling>> | null = null;
  let syscalls: { calls: number; create: SyscallCounts; delete: SyscallCounts | null } | null = null;
  if (profileWanted) {
    log('  profiling pass: the same creates and deletes under --cpu-prof');
    const profDir = bench.mkdir('cpu-prof');
    const pd = await bench.startDaemon({ pool, logLevel: 'info', nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profDir, '--cpu-prof-interval', '250'] });
    const pids = new Array<string>(N);
    const pc = await phase(pd, 'create', names, pids, bytes, INFLIGHT);
    const pdel = await phase(pd, 'delete', names, pids, bytes, INFLIGHT);
    await waitTrashEmpty(pool);
    await pd.stop();
    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (file) {
      profile = {
        creates_per_s_under_profiler: pc.rate,
        deletes_per_s_under_profiler: pdel.rate,
        creates: summariseProfile(path.join(profDir, file), pc.window),
        deletes: summariseProfile(path.join(profDir, file), pdel.window),
      };
    }
    // Off-CPU waiting: fs calls (fsync above all) run on libuv's thread pool, 4 threads by default.
    const POOLSIZE = 16;
    log(`  experiment: the same with UV_THREADPOOL_SIZE=${POOLSIZE}`);
    const td = await bench.startDaemon({ pool, logLevel: 'info', env: { UV_THREADPOOL_SIZE: String(POOLSIZE) } });
    const tids = new Array<string>(N);
    const tc = await phase(td, 'create', names, tids, bytes, INFLIGHT);
    const tdel = await phase(td, 'delete', names, tids, bytes, INFLIGHT);
    await waitTrashEmpty(pool);
    await td.stop();
    threadpool = { size: POOLSIZE, creates: tc, deletes: tdel };
    reference = await fsyncCeiling(pool, INFLIGHT);
    // What one call costs in system calls (one call at a time, counts only).
    // Never more than the volumes named: a run with BENCH_CREATES < 200 has no name for the rest.
    const SC = Math.min(200, N);
    log(`  system calls per call: ${SC} creates and ${SC} deletes under strace -c`);
    const sd = await bench.startDaemon({ pool, logLevel: 'info' });
    const sids = new Array<string>(SC);
    const scNames = names.slice(0, SC);
    for (let i = 0; i < 20; i++) {
      const r = await sd.clients.controller.CreateVolume(createReq(`tp-sc-warm-${i}`, bytes));
      await sd.clients.controller.DeleteVolume({ volume_id: r.volume.volume_id });
    }
    const scCreate = await syscallsPerCall(sd, SC, async (i) => {
      sids[i] = (await sd.clients.controller.CreateVolume(createReq(scNames[i]!, bytes))).volume.volume_id;
    });
    const scDelete = scCreate ? await syscallsPerCall(sd, SC, (i) => sd.clients.controller.DeleteVolume({ volume_id: sids[i]! })) : null;
    if (!scCreate) for (const id of sids.filter(Boolean)) await sd.clients.controller.DeleteVolume({ volume_id: id });
    await waitTrashEmpty(pool);
    await sd.stop();
    syscalls = scCreate ? { calls: SC, create: scCreate, delete: scDelete } : null;
  }

  const med = (xs: number[]) => stats(xs).median;
  const timeline = (xs: TimedStart[]) => Object.fromEntries(TIMELINE.map((t) => [t, med(xs.map((s) => s.timeline_ms[t]))])) as Record<TimelineKey, number>;
  const restartStats = (xs: TimedStart[]) => ({
    ms: stats(xs.map((s) => s.ms)),
    stop_ms: stats(xs.map((s) => s.stop_ms!)),
    samples_ms: xs.map((s) => s.ms),
    timeline_median_ms: timeline(xs),
    daemon_start_ms: med(xs.map((s) => s.daemon_start_ms)),
  });
  const restartFig = { sigterm: restartStats(restarts.sigterm), kill9: restartStats(restarts.kill9) };
  const emptyFig = {
    ms: stats(empty.map((s) => s.ms)),
    timeline_median_ms: timeline(empty),
  };
  const deletesMet = deletes.rate >= GOAL_RATE && deletes.client_ms.p99 < GOAL_P99_MS;
  const rssMet = rssFull < GOAL_RSS_BYTES;
  const restartMet = { sigterm: restartFig.sigterm.ms.median < GOAL_RESTART_MS, kill9: restartFig.kill9.ms.median < GOAL_RESTART_MS };
  const MB = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
  const yes = (b: boolean) => (b ? 'met' : 'NOT met');

  const phaseRow = (label: string, p: Phase) => [label, p.calls, p.rate, p.client_ms.median, p.client_ms.p90, p.client_ms.p99, p.client_ms.max, p.handler_ms?.median ?? NaN, p.handler_ms?.p99 ?? NaN, p.daemon_cpu_ms_per_call, `${(p.daemon_cpu_share * 100).toFixed(0)}%`];
  const tables: Table[] = [
    {
      title: `Throughput, ${INFLIGHT} calls in flight on one channel, Filesystem volumes of ${fmtBytes(bytes)} (client ms; handler = daemon's rpc log)`,
      columns: ['phase', 'calls', 'calls/s', 'median', 'p90', 'p99', 'max', 'handler median', 'handler p99', 'daemon CPU ms/call', 'daemon CPU'],
      rows: [
        phaseRow(`CreateVolume (goal >= ${GOAL_RATE}/s, p99 < ${GOAL_P99_MS} ms)`, creates),
        phaseRow('DeleteVolume', deletes),
        phaseRow('CreateVolume, second round', recreate),
        phaseRow('DeleteVolume after restarts', cleanupDeletes),
      ],
    },
    {
      title: 'Daemon memory (VmRSS)',
      columns: ['when', 'RSS', 'MB', 'goal'],
      rows: [
        ['idle, right after start (empty pool)', fmtBytes(rssIdle), rssIdle / 1e6, ''],
        [`${N} volumes exist (after the creates)`, fmtBytes(rssFull), rssFull / 1e6, `< ${GOAL_RSS_BYTES / 1e6} MB: ${yes(rssMet)}`],
        ['peak during the creates (VmHWM)', fmtBytes(hwm), hwm / 1e6, ''],
        [`after restarts, ${N} volumes loaded`, fmtBytes(rssAfterRestart), rssAfterRestart / 1e6, ''],
      ],
    },
    {
      title: `Restart: spawn until ListVolumes returns all volumes (ms, median of ${RESTARTS}; goal < ${GOAL_RESTART_MS} ms with ${N})`,
      columns: ['restart', 'median', 'max', 'node+modules (1st log line)', 'pool prepared', 'pool loaded', 'serving CSI', 'ListVolumes answered', 'stop took'],
      rows: [
        ['empty pool', emptyFig.ms.median, emptyFig.ms.max, ...TIMELINE.map((k) => emptyFig.timeline_median_ms[k]), ''],
        ...(['sigterm', 'kill9'] as const).map((k) => [
          `${N} volumes, after ${k === 'sigterm' ? 'SIGTERM' : 'kill -9'}`,
          restartFig[k].ms.median,
          restartFig[k].ms.max,
          ...TIMELINE.map((t) => restartFig[k].timeline_median_ms[t]),
          restartFig[k].stop_ms.median,
        ]),
      ],
    },
  ];
  if (profile) {
    const c = profile.creates;
    const dl = profile.deletes;
    const areas = [...new Set([...c.areas, ...dl.areas].map((a) => a.area))];
    const get = (p: ProfileSummary, a: string) => p.areas.find((x) => x.area === a);
    tables.push({
      title: `Daemon CPU during the ${N} creates and the ${N} deletes (--cpu-prof, self time; ${profile.creates_per_s_under_profiler.toFixed(0)} creates/s, ${profile.deletes_per_s_under_profiler.toFixed(0)} deletes/s under the profiler)`,
      columns: ['area', 'creates ms', 'share', 'per create ms', 'deletes ms', 'share', 'per delete ms'],
      rows: [
        ...areas.map((a) => [a, get(c, a)?.ms ?? 0, `${((get(c, a)?.share_of_busy ?? 0) * 100).toFixed(1)}%`, (get(c, a)?.ms ?? 0) / N, get(dl, a)?.ms ?? 0, `${((get(dl, a)?.share_of_busy ?? 0) * 100).toFixed(1)}%`, (get(dl, a)?.ms ?? 0) / N]),
        ['busy total (not idle)', c.busy_ms, '100%', c.busy_ms / N, dl.busy_ms, '100%', dl.busy_ms / N],
        ['idle (event loop waiting)', c.total_ms - c.busy_ms, '', '', dl.total_ms - dl.busy_ms, '', ''],
      ],
    });
    tables.push({
      title: 'Top functions by self time during the creates',
      columns: ['function', 'ms', 'share of busy'],
      rows: c.top_functions.map((f) => [f.function, f.ms, `${(f.share_of_busy * 100).toFixed(1)}%`]),
    });
    tables.push({
      title: 'Top functions by self time during the deletes',
      columns: ['function', 'ms', 'share of busy'],
      rows: dl.top_functions.map((f) => [f.function, f.ms, `${(f.share_of_busy * 100).toFixed(1)}%`]),
    });
  }
  if (threadpool) {
    tables.push({
      title: `Experiment: libuv thread pool of ${threadpool.size} instead of 4 (same calls, same daemon build)`,
      columns: ['phase', 'calls/s', 'median', 'p99', 'handler median', 'daemon CPU ms/call'],
      rows: [
        ['CreateVolume, default pool (4)', creates.rate, creates.client_ms.median, creates.client_ms.p99, creates.handler_ms?.median ?? NaN, creates.daemon_cpu_ms_per_call],
        [`CreateVolume, UV_THREADPOOL_SIZE=${threadpool.size}`, threadpool.creates.rate, threadpool.creates.client_ms.median, threadpool.creates.client_ms.p99, threadpool.creates.handler_ms?.median ?? NaN, threadpool.creates.daemon_cpu_ms_per_call],
        ['DeleteVolume, default pool (4)', deletes.rate, deletes.client_ms.median, deletes.client_ms.p99, deletes.handler_ms?.median ?? NaN, deletes.daemon_cpu_ms_per_call],
        [`DeleteVolume, UV_THREADPOOL_SIZE=${threadpool.size}`, threadpool.deletes.rate, threadpool.deletes.client_ms.median, threadpool.deletes.client_ms.p99, threadpool.deletes.handler_ms?.median ?? NaN, threadpool.deletes.daemon_cpu_ms_per_call],
      ],
    });
  }
  if (syscalls) {
    const names2 = [...new Set([...Object.keys(syscalls.create), ...Object.keys(syscalls.delete ?? {})])];
    const total = (o: SyscallCounts | null) => Object.values(o ?? {}).reduce((a, x) => a + x.per_call, 0);
    const order = (k: string) => (syscalls.create[k]?.per_call ?? 0) + (syscalls.delete?.[k]?.per_call ?? 0);
    const shown = names2.filter((k) => order(k) >= 0.5).sort((a, b) => order(b) - order(a));
    const cell = (o: SyscallCounts | null, k: string) => (o?.[k] ? `${fmtNumber(o[k].per_call)}${o[k].errors_per_call ? ` (${fmtNumber(o[k].errors_per_call)} failed)` : ''}` : '');
    tables.push({
      title: `System calls per call, all daemon threads (strace -f -c, ${syscalls.calls} calls one at a time; read/write include libuv's wake-ups, futex its thread hand-offs)`,
      columns: ['syscall', 'per CreateVolume', 'per DeleteVolume'],
      rows: [...shown.map((k) => [k, cell(syscalls.create, k), cell(syscalls.delete, k)]), ['total', fmtNumber(total(syscalls.create)), fmtNumber(total(syscalls.delete))]],
    });
  }
  if (reference || recompute) {
    tables.push({
      title: 'Reference costs, measured from this process',
      columns: ['pattern', 'value'],
      rows: [
        ...(recompute && !('error' in recompute)
          ? [[`daemon's capacity recompute over ${recompute.volumes} volumes (walks each volume directory; CreateVolume holds the pool's capacity lock meanwhile, at most every 2 s), ms`, recompute.recompute_ms]]
          : recompute && 'error' in recompute
            ? [['capacity recompute', `not measured: ${recompute.error}`]]
            : []),
        ...(reference
          ? [
              ['atomic small-file write (write+fsync+rename+dir fsync), sequential, ms', reference.atomic_write_ms_sequential],
              [`the same, ${reference.inflight} in flight, writes/s`, reference.atomic_writes_per_s_concurrent],
            ]
          : []),
      ],
    });
  }
  tables.push({
    title: `When the slow creates happened (calls >= ${GOAL_P99_MS} ms, by 250 ms window of the phase)`,
    columns: ['phase', 'calls >= goal', 'windows with one', 'windows', 'worst windows (start s: max ms, slow calls)'],
    rows: ([['CreateVolume', creates], ['DeleteVolume', deletes]] as const).map(([k, p]) => [
      k,
      p.slow.over_goal,
      p.slow.windows_with_slow,
      p.slow.windows_total,
      [...p.slow.windows].sort((a, b) => b.max_ms - a.max_ms).slice(0, 4).map((w) => `${(w.t_ms / 1000).toFixed(2)}: ${w.max_ms.toFixed(0)}, ${w.over_goal}`).join('; '),
    ]),
  });

  const perVolumeLoadUs = ((restartFig.sigterm.timeline_median_ms.pool_loaded - restartFig.sigterm.timeline_median_ms.pool_prepared) / N) * 1000;
  const summary = [
    `creates: ${creates.rate.toFixed(0)}/s, p99 ${creates.client_ms.p99.toFixed(1)} ms (goal >= ${GOAL_RATE}/s and p99 < ${GOAL_P99_MS} ms: ${yes(createsMet)}); median ${creates.client_ms.median.toFixed(2)} ms, handler median ${creates.handler_ms?.median.toFixed(2)} ms, daemon CPU ${creates.daemon_cpu_ms_per_call.toFixed(2)} ms/create`,
    `deletes: ${deletes.rate.toFixed(0)}/s, p99 ${deletes.client_ms.p99.toFixed(1)} ms (same bar: ${yes(deletesMet)})`,
    `RSS: idle ${MB(rssIdle)}, with ${N} volumes ${MB(rssFull)} (goal < ${GOAL_RSS_BYTES / 1e6} MB: ${yes(rssMet)}), peak ${MB(hwm)}`,
    `restart with ${N} volumes: after SIGTERM ${restartFig.sigterm.ms.median.toFixed(0)} ms, after kill -9 ${restartFig.kill9.ms.median.toFixed(0)} ms (goal < ${GOAL_RESTART_MS} ms: ${yes(restartMet.sigterm)} / ${yes(restartMet.kill9)}); empty pool ${emptyFig.ms.median.toFixed(0)} ms; loading records ~${perVolumeLoadUs.toFixed(0)} µs per volume`,
    `client (this process) CPU: ${creates.client_cpu_ms_per_call.toFixed(2)} ms per create on the same ${os.cpus().length} CPUs`,
    `creates >= ${GOAL_P99_MS} ms: ${creates.slow.over_goal} of ${N}, in ${creates.slow.windows_with_slow} of ${creates.slow.windows_total} 250-ms windows${recompute && !('error' in recompute) ? `; the daemon's capacity recompute over ${recompute.volumes} volumes takes ${recompute.recompute_ms.toFixed(0)} ms (under the capacity lock every create takes, at most every 2 s)` : ''}`,
  ];

  const restartBars: Bar[] = [
    { label: 'empty pool', value: emptyFig.ms.median, color: COLORS.grey, points: empty.map((s) => s.ms) },
    { label: `${N} vols, after SIGTERM`, value: restartFig.sigterm.ms.median, color: restartMet.sigterm ? COLORS.green : COLORS.orange, points: restartFig.sigterm.samples_ms },
    { label: `${N} vols, after kill -9`, value: restartFig.kill9.ms.median, color: restartMet.kill9 ? COLORS.green : COLORS.orange, points: restartFig.kill9.samples_ms },
  ];
  const chart = {
    title: `Volume throughput, memory and restart (${N} volumes, ${INFLIGHT} in flight)`,
    panels: [
      {
        title: 'Calls per second (client wall clock)',
        unit: 'calls/s',
        goal: { value: GOAL_RATE, label: `goal ≥ ${GOAL_RATE}/s` },
        bars: [
          { label: 'CreateVolume', value: creates.rate, color: creates.rate >= GOAL_RATE ? COLORS.green : COLORS.orange },
          { label: 'DeleteVolume', value: deletes.rate, color: deletes.rate >= GOAL_RATE ? COLORS.green : COLORS.orange },
        ],
      },
      {
        title: 'Latency (client ms)',
        unit: 'ms',
        goal: { value: GOAL_P99_MS, label: `goal p99 < ${GOAL_P99_MS} ms` },
        bars: [
          { label: 'CreateVolume median', value: creates.client_ms.median, color: COLORS.lightBlue },
          { label: 'CreateVolume p99', value: creates.client_ms.p99, color: creates.client_ms.p99 < GOAL_P99_MS ? COLORS.green : COLORS.orange },
          { label: 'DeleteVolume median', value: deletes.client_ms.median, color: COLORS.lightBlue },
          { label: 'DeleteVolume p99', value: deletes.client_ms.p99, color: deletes.client_ms.p99 < GOAL_P99_MS ? COLORS.green : COLORS.orange },
        ],
      },
      {
        title: 'Daemon RSS (MB)',
        unit: 'MB',
        goal: { value: GOAL_RSS_BYTES / 1e6, label: `goal < ${GOAL_RSS_BYTES / 1e6} MB with ${N}` },
        bars: [
          { label: 'idle after start', value: rssIdle / 1e6, color: COLORS.grey },
          { label: `${N} volumes`, value: rssFull / 1e6, color: rssMet ? COLORS.green : COLORS.orange },
          { label: 'peak (VmHWM)', value: hwm / 1e6, color: COLORS.blue },
        ],
      },
      {
        title: `Restart: spawn until ListVolumes returns all (ms); circles = the ${RESTARTS} runs`,
        unit: 'ms',
        goal: { value: GOAL_RESTART_MS, label: `goal < ${GOAL_RESTART_MS} ms` },
        bars: restartBars,
      },
    ],
    notes: [
      `One gRPC channel, ${INFLIGHT} calls outstanding; Filesystem volumes (mount, SINGLE_NODE_WRITER) of ${fmtBytes(bytes)} in a host temp-dir pool; daemon at log level info.`,
      `Daemon CPU per create ${creates.daemon_cpu_ms_per_call.toFixed(2)} ms, per delete ${deletes.daemon_cpu_ms_per_call.toFixed(2)} ms; client ${creates.client_cpu_ms_per_call.toFixed(2)} ms per create (same machine).`,
      ...(profile ? [`Profile of the creates (busy CPU): ${profile.creates.areas.slice(0, 5).map((a) => `${a.area} ${(a.share_of_busy * 100).toFixed(0)}%`).join(', ')}.`] : []),
      ...(threadpool ? [`With UV_THREADPOOL_SIZE=${threadpool.size}: ${threadpool.creates.rate.toFixed(0)} creates/s (p99 ${threadpool.creates.client_ms.p99.toFixed(1)} ms), ${threadpool.deletes.rate.toFixed(0)} deletes/s.`] : []),
    ],
  };

  return {
    summary,
    tables,
    chart,
    config: { creates: N, inflight: INFLIGHT, warmup: WARM, restarts: RESTARTS, volume_bytes: bytes, access_type: 'mount', pool: 'host temp dir', daemon_log_level: 'info' },
    figures: { creates, deletes, recreate, cleanup_deletes: cleanupDeletes, rss_bytes: { idle: rssIdle, with_volumes: rssFull, peak: hwm, after_restart: rssAfterRestart }, restart: restartFig, restart_empty_pool: emptyFig, profile, threadpool_experiment: threadpool, reference, capacity_recompute: recompute, syscalls },
    goal: {
      text: `creates >= ${GOAL_RATE}/s with p99 < ${GOAL_P99_MS} ms; RSS < ${GOAL_RSS_BYTES / 1e6} MB with ${N} volumes; restart < ${GOAL_RESTART_MS} ms with ${N}`,
      met: createsMet && rssMet && restartMet.sigterm && restartMet.kill9,
      value: { creates_per_s: creates.rate, p99_ms: creates.client_ms.p99, rss_bytes: rssFull, restart_ms: { sigterm: restartFig.sigterm.ms.median, kill9: restartFig.kill9.ms.median } },
    },
    headlines: [
      { metric: `creates/s (${N}, ${INFLIGHT} in flight)`, value: creates.rate, unit: '/s', goal: `>= ${GOAL_RATE}/s`, met: creates.rate >= GOAL_RATE },
      { metric: 'create p99 latency', value: creates.client_ms.p99, unit: 'ms', goal: `< ${GOAL_P99_MS} ms`, met: creates.client_ms.p99 < GOAL_P99_MS },
      { metric: `deletes/s (${N}, ${INFLIGHT} in flight)`, value: deletes.rate, unit: '/s', detail: `p99 ${deletes.client_ms.p99.toFixed(1)} ms` },
      { metric: `daemon RSS with ${N} volumes`, value: rssFull / 1e6, unit: 'MB', goal: `< ${GOAL_RSS_BYTES / 1e6} MB`, met: rssMet, detail: `idle ${MB(rssIdle)}` },
      { metric: `restart after SIGTERM, ${N} volumes`, value: restartFig.sigterm.ms.median, unit: 'ms', goal: `< ${GOAL_RESTART_MS} ms`, met: restartMet.sigterm },
      { metric: `restart after kill -9, ${N} volumes`, value: restartFig.kill9.ms.median, unit: 'ms', goal: `< ${GOAL_RESTART_MS} ms`, met: restartMet.kill9 },
    ],
  };
}
