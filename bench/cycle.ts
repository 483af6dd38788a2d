// Latency of one CreateVolume -> NodePublishVolume -> NodeUnpublishVolume -> DeleteVolume cycle of a
// filesystem volume (mount access type, SINGLE_NODE_WRITER, 1 GiB), measured by a gRPC client on the
// daemon's unix socket. Also reads the daemon's own per-RPC timings from its log to show where the time
// goes: handler time vs gRPC/transport, and (in a shorter second pass at debug level) the external
// tools the handlers run.
import { spawn, spawnSync } from 'node:child_process';
import { rmdirSync } from 'node:fs';
import { open as fopen, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Clients } from '../test/helpers/csi-client.js';
import type { LogEntry } from '../test/helpers/process-log.js';
import { BENCH_DIR, GiB, MOUNT_CAP, POOL_NAME, envInt, nowMs } from './lib/common.js';
import { readMountPoints } from './lib/leaks.js';
import type { BenchResult, Say } from './lib/result.js';
import type { Bench } from './lib/scratch.js';
import { median, stats, type Stats } from './lib/stats.js';
import { COLORS, type Bar } from './lib/svg.js';
import type { Table } from './lib/table.js';
import { runTool } from './lib/tools.js';

export const title = 'Filesystem volume lifecycle latency';

const RPCS = ['CreateVolume', 'NodePublishVolume', 'NodeUnpublishVolume', 'DeleteVolume'] as const;
type RpcName = (typeof RPCS)[number];
type PerRpc<T> = Record<RpcName, T>;
const perRpc = <T>(f: (r: RpcName) => T): PerRpc<T> => Object.fromEntries(RPCS.map((r) => [r, f(r)])) as PerRpc<T>;
const isRpc = (m: unknown): m is RpcName => RPCS.includes(m as RpcName);

/** Client-side ms per RPC of one cycle, and in total. */
type CycleTimes = PerRpc<number> & { total: number };
const GOAL_MS = 5;

/** One cycle; returns client-side ms per RPC and in total. */
async function cycle(c: Clients, pods: string, name: string, check = false): Promise<{ id: string; t: CycleTimes }> {
  const t = {} as CycleTimes;
  const started = nowMs();
  let t0 = started;
  const lap = (rpc: RpcName) => {
    const now = nowMs();
    t[rpc] = now - t0;
    t0 = now;
  };
  const res = await c.controller.CreateVolume({
    name,
    volume_capabilities: [MOUNT_CAP],
    capacity_range: { required_bytes: String(GiB), limit_bytes: '0' },
    parameters: { storagePool: POOL_NAME },
  });
  lap('CreateVolume');
  const id = res.volume.volume_id as string;
  // Kubelet's shape: .../pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount; the parent exists, the driver makes `mount`.
  const target = path.join(pods, name, 'mount');
  await c.node.NodePublishVolume({ volume_id: id, target_path: target, volume_capability: MOUNT_CAP, readonly: false });
  lap('NodePublishVolume');
  if (check && !readMountPoints().includes(target)) throw new Error(`NodePublishVolume answered OK but ${target} is not a mount point`);
  await c.node.NodeUnpublishVolume({ volume_id: id, target_path: target });
  lap('NodeUnpublishVolume');
  if (check && readMountPoints().includes(target)) throw new Error(`NodeUnpublishVolume answered OK but ${target} is still mounted`);
  await c.controller.DeleteVolume({ volume_id: id });
  lap('DeleteVolume');
  t.total = nowMs() - started;
  return { id, t };
}

/** The daemon's "rpc" log lines for a set of volume names/ids, grouped by method (handler ms). */
function serverTimes(entries: readonly LogEntry[], names: Set<string>, ids: Set<string>): PerRpc<number[]> {
  const by = perRpc<number[]>(() => []);
  for (const e of entries) {
    if (e.msg !== 'rpc' || !isRpc(e.method) || e.code !== 'OK') continue;
    if ((e.name && names.has(e.name)) || (e.volume_id && ids.has(e.volume_id))) by[e.method].push(e.ms!);
  }
  return by;
}

/**
 * At debug level the daemon logs every tool it runs ("exec", with ms) before the "rpc" line of the call
 * that ran it; calls are sequential here, so each exec belongs to the next rpc line.
 */
function execAttribution(entries: readonly LogEntry[], ids: Set<string>, cycles: number) {
  const byRpc = perRpc(() => ({ execs: 0, ms: [] as number[] }));
  const perCmd = new Map<string, number[]>();
  let pending: LogEntry[] = [];
  for (const e of entries) {
    if (e.msg === 'exec' || e.msg === 'syscall') {
      pending.push(e.msg === 'syscall' ? { ...e, cmd: `${e.call} (syscall)` } : e);
    } else if (e.msg === 'rpc') {
      const method = e.method;
      const mine = isRpc(method) && ((e.volume_id && ids.has(e.volume_id)) || (e.name && ids.has(`name:${e.name}`)));
      if (mine) {
        byRpc[method].execs += pending.length;
        byRpc[method].ms.push(pending.reduce((a, x) => a + x.ms!, 0));
        for (const x of pending) {
          // "mount --bind /tmp/.../pool/v /tmp/.../mount" -> "mount --bind"
          const cmd = x.cmd!.split(' ').filter((a) => !a.startsWith('/') && !a.startsWith("'/")).join(' ');
          const key = `${method}: ${cmd}`;
          if (!perCmd.has(key)) perCmd.set(key, []);
          perCmd.get(key)!.push(x.ms!);
        }
      }
      pending = [];
    }
  }
  return {
    perRpc: perRpc((r) => ({ execs_per_call: byRpc[r].execs / cycles, exec_ms_median: byRpc[r].ms.length ? median(byRpc[r].ms) : 0 })),
    perCommand: [...perCmd.entries()].map(([k, v]) => ({ command: k, runs_per_cycle: v.length / cycles, median_ms: median(v) })),
  };
}

/** What the handlers' building blocks cost on this machine, measured from this process. */
async function referenceCosts(poolDir: string) {
  // The metadata write of every RPC: temp file, fsync, rename, fsync of the directory.
  const atomic: number[] = [];
  const dir = path.join(poolDir, 'reference-fsync');
  await mkdir(dir);
  for (let i = 0; i < 60; i++) {
    const t0 = nowMs();
    const tmp = path.join(dir, `.x.tmp`);
    const fh = await fopen(tmp, 'w', 0o600);
    await fh.writeFile('{"version":1,"name":"reference","publications":{}}\n');
    await fh.sync();
    await fh.close();
    await rename(tmp, path.join(dir, 'x.json'));
    const dh = await fopen(dir, 'r');
    await dh.sync();
    await dh.close();
    if (i >= 10) atomic.push(nowMs() - t0);
  }
  await rm(dir, { recursive: true, force: true });
  // Spawning a tool from Node (what each mount/umount costs before the tool does anything).
  const spawnMs: number[] = [];
  for (let i = 0; i < 40; i++) {
    const r = await runTool('true', []);
    if (i >= 10) spawnMs.push(r.ms);
  }
  return { atomic_write_fsync_ms: median(atomic), spawn_true_ms: median(spawnMs) };
}

/**
 * The same cycle driven by grpc-go, the gRPC implementation of every real caller of a CSI driver
 * (kubelet, csi-provisioner, the other sidecars): bench/go-client, built here with the Go toolchain.
 * Returns undefined (and says why) when Go is not installed.
 */
interface GoClientOutput {
  cycle_ms: number[];
  rpc_ms: PerRpc<number[]>;
  null_rpc_ms: number[];
}

async function goClientPass(bench: Bench, { pool, pods, cycles, warmup, log }: { pool: string; pods: string; cycles: number; warmup: number; log: Say }) {
  const goBin = ['go', '/usr/local/go/bin/go'].find((g) => spawnSync(g, ['version'], { stdio: 'ignore' }).status === 0);
  if (!goBin) {
    log('  grpc-go pass skipped: no Go toolchain');
    return undefined;
  }
  const binary = path.join(bench.dir, 'csi-cycle');
  const built = spawnSync(goBin, ['build', '-o', binary, '.'], { cwd: path.join(BENCH_DIR, 'go-client'), encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`go build of bench/go-client failed: ${built.stderr}`);
  log(`  grpc-go pass: ${warmup} warm-up + ${cycles} cycles`);
  const d = await bench.startDaemon({ pool, logLevel: 'info' });
  // Spawned, not run synchronously: this process must keep reading the daemon's log pipe meanwhile.
  const child = spawn(binary, ['-endpoint', d.endpoint, '-pods', pods, '-pool', POOL_NAME, '-cycles', String(cycles), '-warmup', String(warmup), '-prefix', 'bench-go'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  await d.stop();
  if (code !== 0) throw new Error(`bench/go-client exited with ${code}: ${err}`);
  const res = JSON.parse(out) as GoClientOutput;
  return {
    client: 'grpc-go (google.golang.org/grpc, as kubelet and the CSI sidecars)',
    cycle_ms: stats(res.cycle_ms),
    rpc_ms: perRpc((r) => stats(res.rpc_ms[r])),
    null_rpc_ms: stats(res.null_rpc_ms),
    samples_ms: res.cycle_ms,
  };
}

export async function run(bench: Bench, log: Say): Promise<BenchResult> {
  const N = envInt('BENCH_CYCLES', 200);
  const WARM = envInt('BENCH_WARMUP', 20, 0);
  const ATTR = envInt('BENCH_ATTRIBUTION_CYCLES', Math.max(20, Math.round(N / 4)), 0);
  const pool = bench.mkdir('pool');
  const pods = bench.mkdir('pods');

  // Pass 1: the measurement, daemon at its production log level.
  const d = await bench.startDaemon({ pool, logLevel: 'info' });
  const c = d.clients;
  log(`  warm-up: ${WARM} cycles`);
  const mkParent = (name: string) => bench.mkdir(path.join('pods', name));
  for (let i = 0; i < WARM; i++) {
    const name = `bench-warm-${i}`;
    mkParent(name);
    await cycle(c, pods, name, i === 0);
    rmdirSync(path.join(pods, name));
  }
  log(`  measuring: ${N} cycles`);
  const samples: CycleTimes[] = [];
  const names = new Set<string>();
  const ids = new Set<string>();
  for (let i = 0; i < N; i++) {
    const name = `bench-cycle-${i}`;
    mkParent(name);
    const { id, t } = await cycle(c, pods, name);
    rmdirSync(path.join(pods, name));
    samples.push(t);
    names.add(name);
    ids.add(id);
  }
  // A call that does nothing (GetPluginInfo): the floor set by gRPC, the socket and the daemon's logging.
  const NULL_CALLS = 300;
  const nullClient: number[] = [];
  for (let i = 0; i < 50 + NULL_CALLS; i++) {
    const t0 = nowMs();
    await c.identity.GetPluginInfo({});
    if (i >= 50) nullClient.push(nowMs() - t0);
  }
  const nullServer = (es: readonly LogEntry[]) => es.filter((e) => e.msg === 'rpc' && e.method === 'GetPluginInfo').map((e) => e.ms!);
  await d.log.waitForEntries((es) => Object.values(serverTimes(es, names, ids)).every((v) => v.length >= N) && nullServer(es).length >= 50 + NULL_CALLS, 5000);
  const server = serverTimes(d.log.entries, names, ids);
  const nullRpc = { calls: NULL_CALLS, client_median_ms: median(nullClient), client_p99_ms: stats(nullClient).p99, handler_median_ms: median(nullServer(d.log.entries).slice(50)) };
  await d.stop();

  // Pass 2: shorter, at debug level, to see which tools each handler runs and what they cost.
  let attribution: ({ cycles: number; cycle_median_ms_at_debug: number } & ReturnType<typeof execAttribution>) | null = null;
  if (ATTR > 0) {
    log(`  attribution pass: ${ATTR} cycles at log level debug`);
    const dd = await bench.startDaemon({ pool, logLevel: 'debug' });
    const attrIds = new Set<string>();
    const attrTotals: number[] = [];
    for (let i = 0; i < WARM + ATTR; i++) {
      const name = `bench-attr-${i}`;
      mkParent(name);
      const { id, t } = await cycle(dd.clients, pods, name);
      rmdirSync(path.join(pods, name));
      if (i >= WARM) {
        attrIds.add(id);
        attrIds.add(`name:${name}`);
        attrTotals.push(t.total);
      }
    }
    await dd.log.waitForEntries((es) => es.filter((e) => e.msg === 'rpc' && e.method === 'DeleteVolume' && attrIds.has(e.volume_id!)).length >= ATTR, 5000);
    attribution = { cycles: ATTR, cycle_median_ms_at_debug: median(attrTotals), ...execAttribution(dd.log.entries, attrIds, ATTR) };
    await dd.stop();
  }
  const goPass = await goClientPass(bench, { pool, pods, cycles: N, warmup: WARM, log });
  const reference = await referenceCosts(pool);

  // Figures.
  const cycleStats = stats(samples.map((s) => s.total));
  const rpc = perRpc((r) => {
    const client = stats(samples.map((s) => s[r]));
    const srv: Stats | null = server[r].length ? stats(server[r]) : null;
    return { client, server: srv, transport_median_ms: srv ? client.median - srv.median : null };
  });
  // The goal is judged on what kubelet and the sidecars see: the grpc-go figure, when Go is there.
  const goalValue = goPass ? goPass.cycle_ms.median : cycleStats.median;
  const goalMet = goalValue <= GOAL_MS;
  const nodeMet = cycleStats.median <= GOAL_MS;
  const sumClientMedians = RPCS.reduce((a, r) => a + rpc[r].client.median, 0);
  const sumServerMedians = RPCS.reduce((a, r) => a + (rpc[r].server?.median ?? 0), 0);

  const tables: Table[] = [
    {
      title: `Cycle latency, ${N} cycles after ${WARM} warm-up (ms, client side)`,
      columns: ['what', 'median', 'p90', 'p99', 'min', 'max'],
      rows: [
        ...(goPass
          ? [
              ['grpc-go: cycle (4 RPCs)', goPass.cycle_ms.median, goPass.cycle_ms.p90, goPass.cycle_ms.p99, goPass.cycle_ms.min, goPass.cycle_ms.max],
              ...RPCS.map((r) => [`grpc-go: ${r}`, goPass.rpc_ms[r].median, goPass.rpc_ms[r].p90, goPass.rpc_ms[r].p99, goPass.rpc_ms[r].min, goPass.rpc_ms[r].max]),
              ['grpc-go: null RPC', goPass.null_rpc_ms.median, goPass.null_rpc_ms.p90, goPass.null_rpc_ms.p99, goPass.null_rpc_ms.min, goPass.null_rpc_ms.max],
            ]
          : []),
        ['grpc-js: cycle (4 RPCs)', cycleStats.median, cycleStats.p90, cycleStats.p99, cycleStats.min, cycleStats.max],
        ...RPCS.map((r) => [`grpc-js: ${r}`, rpc[r].client.median, rpc[r].client.p90, rpc[r].client.p99, rpc[r].client.min, rpc[r].client.max]),
      ],
    },
    {
      title: 'Where the time goes (medians, ms)',
      columns: ['RPC', 'client', 'handler', 'gRPC+socket', ...(attribution ? ['tools', 'tool runs'] : [])],
      rows: RPCS.map((r) => [
        r,
        rpc[r].client.median,
        rpc[r].server?.median ?? NaN,
        rpc[r].transport_median_ms ?? NaN,
        ...(attribution ? [attribution.perRpc[r].exec_ms_median, attribution.perRpc[r].execs_per_call] : []),
      ]),
    },
  ];
  if (attribution && attribution.perCommand.length > 0) {
    tables.push({
      title: 'External tools run by the handlers (debug pass)',
      columns: ['RPC: tool', 'runs/cycle', 'median ms'],
      rows: attribution.perCommand.map((p) => [p.command, p.runs_per_cycle, p.median_ms]),
    });
  }
  tables.push({
    title: 'Reference costs on this machine (pool directory, ms)',
    columns: ['building block', 'median'],
    rows: [
      ['atomic metadata write (write+fsync+rename+dir fsync)', reference.atomic_write_fsync_ms],
      ['spawn of `true` from Node', reference.spawn_true_ms],
      ['null RPC (Identity.GetPluginInfo), client side', nullRpc.client_median_ms],
      ['null RPC, daemon handler', nullRpc.handler_median_ms],
    ],
  });

  const summary = [
    ...(goPass
      ? [`cycle median with grpc-go (kubelet's and the sidecars' client) ${goPass.cycle_ms.median.toFixed(2)} ms (goal <= ${GOAL_MS} ms: ${goalMet ? 'met' : 'NOT met'}), p99 ${goPass.cycle_ms.p99.toFixed(2)} ms; null RPC ${goPass.null_rpc_ms.median.toFixed(2)} ms`]
      : []),
    `cycle median with grpc-js (Node's client) ${cycleStats.median.toFixed(2)} ms (${nodeMet ? 'within' : 'above'} ${GOAL_MS} ms), p99 ${cycleStats.p99.toFixed(2)} ms; null RPC ${nullRpc.client_median_ms.toFixed(2)} ms`,
    `sum of per-RPC medians: client ${sumClientMedians.toFixed(2)} ms, handlers ${sumServerMedians.toFixed(2)} ms`,
  ];

  const rpcBars: Bar[] = [];
  for (const r of RPCS) {
    rpcBars.push({ label: `${r} (client)`, value: rpc[r].client.median, color: COLORS.blue });
    if (rpc[r].server) rpcBars.push({ label: `handler`, value: rpc[r].server.median, color: COLORS.lightBlue });
    if (attribution && attribution.perRpc[r].execs_per_call > 0) {
      rpcBars.push({ label: `tools run (${attribution.perRpc[r].execs_per_call.toFixed(1)}/call)`, value: attribution.perRpc[r].exec_ms_median, color: COLORS.orange });
    }
  }
  const chart = {
    title: 'Volume cycle: Create → NodePublish → NodeUnpublish → Delete',
    panels: [
      {
        title: `Whole cycle, filesystem volume (mount, SINGLE_NODE_WRITER, 1 GiB), ${N} cycles after ${WARM} warm-up (ms)`,
        unit: 'ms',
        goal: { value: GOAL_MS, label: `goal: median ≤ ${GOAL_MS} ms` },
        bars: [
          ...(goPass
            ? [
                { label: 'grpc-go median', value: goPass.cycle_ms.median, color: goalMet ? COLORS.green : COLORS.orange },
                { label: 'grpc-go p99', value: goPass.cycle_ms.p99, color: COLORS.blue },
              ]
            : []),
          { label: 'grpc-js min', value: cycleStats.min, color: COLORS.teal },
          { label: 'grpc-js median', value: cycleStats.median, color: nodeMet ? COLORS.green : COLORS.orange },
          { label: 'grpc-js p90', value: cycleStats.p90, color: COLORS.blue },
          { label: 'grpc-js p99', value: cycleStats.p99, color: COLORS.blue },
          { label: 'grpc-js max', value: cycleStats.max, color: COLORS.grey },
        ],
      },
      {
        title: `Per RPC, medians (ms): client-observed, daemon handler${attribution ? ', external tools inside the handler' : ''}`,
        unit: 'ms',
        bars: rpcBars,
      },
    ],
    notes: [
      'grpc-go = bench/go-client, the gRPC implementation of kubelet and the sidecars; grpc-js = this Node process (about 0.4 ms more per call on its own side).',
      'client = gRPC call as the client sees it; handler = the daemon’s own "rpc" log timing; tools = tools and system calls inside the handler (debug pass).',
      `Reference: null RPC (GetPluginInfo) ${nullRpc.client_median_ms.toFixed(2)} ms, atomic metadata write (2 fsyncs) ${reference.atomic_write_fsync_ms.toFixed(2)} ms, spawning a process from Node ${reference.spawn_true_ms.toFixed(2)} ms.`,
    ],
  };

  return {
    summary,
    tables,
    chart,
    config: { cycles: N, warmup: WARM, attribution_cycles: ATTR, volume_bytes: GiB, access_type: 'mount', access_mode: 'SINGLE_NODE_WRITER', daemon_log_level: 'info' },
    figures: {
      cycle_ms: cycleStats,
      rpc_ms: rpc,
      go_client: goPass ?? null,
      sum_of_client_medians_ms: sumClientMedians,
      sum_of_handler_medians_ms: sumServerMedians,
      attribution,
      reference_ms: reference,
      null_rpc: nullRpc,
      samples_ms: samples.map((s) => s.total),
    },
    goal: { text: `cycle median <= ${GOAL_MS} ms (${goPass ? 'grpc-go client' : 'grpc-js client'})`, met: goalMet, value: goalValue },
  };
}
