// Latency of one CreateVolume -> NodePublishVolume -> NodeUnpublishVolume -> DeleteVolume cycle of a
// filesystem volume (mount access type, SINGLE_NODE_WRITER, 1 GiB), measured by a gRPC client on the
// daemon's unix socket. Also reads the daemon's own per-RPC timings from its log to show where the time
// goes: handler time vs gRPC/transport, and (in a shorter second pass at debug level) the external
// tools the handlers run.
import { rmdirSync } from 'node:fs';
import { open as fopen, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { COLORS, GiB, MOUNT_CAP, POOL_NAME, envInt, median, nowMs, readMountPoints, runTool, stats } from './lib.mjs';

export const title = 'Filesystem volume lifecycle latency';

const RPCS = ['CreateVolume', 'NodePublishVolume', 'NodeUnpublishVolume', 'DeleteVolume'];
const GOAL_MS = 5;

/** One cycle; returns client-side ms per RPC and in total. */
async function cycle(c, pods, name, check = false) {
  const t = {};
  const started = nowMs();
  let t0 = started;
  const lap = (rpc) => {
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
  const id = res.volume.volume_id;
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
function serverTimes(entries, names, ids) {
  const by = Object.fromEntries(RPCS.map((r) => [r, []]));
  for (const e of entries) {
    if (e.msg !== 'rpc' || !by[e.method] || e.code !== 'OK') continue;
    if ((e.name && names.has(e.name)) || (e.volume_id && ids.has(e.volume_id))) by[e.method].push(e.ms);
  }
  return by;
}

/**
 * At debug level the daemon logs every tool it runs ("exec", with ms) before the "rpc" line of the call
 * that ran it; calls are sequential here, so each exec belongs to the next rpc line.
 */
function execAttribution(entries, ids, cycles) {
  const perRpc = Object.fromEntries(RPCS.map((r) => [r, { execs: 0, ms: [] }]));
  const perCmd = new Map();
  let pending = [];
  for (const e of entries) {
    if (e.msg === 'exec') {
      pending.push(e);
    } else if (e.msg === 'rpc') {
      const mine = perRpc[e.method] && ((e.volume_id && ids.has(e.volume_id)) || (e.name && ids.has(`name:${e.name}`)));
      if (mine) {
        perRpc[e.method].execs += pending.length;
        perRpc[e.method].ms.push(pending.reduce((a, x) => a + x.ms, 0));
        for (const x of pending) {
          // "mount --bind /tmp/.../pool/v /tmp/.../mount" -> "mount --bind"
          const cmd = x.cmd.split(' ').filter((a) => !a.startsWith('/') && !a.startsWith("'/")).join(' ');
          const key = `${e.method}: ${cmd}`;
          if (!perCmd.has(key)) perCmd.set(key, []);
          perCmd.get(key).push(x.ms);
        }
      }
      pending = [];
    }
  }
  return {
    perRpc: Object.fromEntries(
      Object.entries(perRpc).map(([k, v]) => [k, { execs_per_call: v.execs / cycles, exec_ms_median: v.ms.length ? median(v.ms) : 0 }]),
    ),
    perCommand: [...perCmd.entries()].map(([k, v]) => ({ command: k, runs_per_cycle: v.length / cycles, median_ms: median(v) })),
  };
}

/** What the handlers' building blocks cost on this machine, measured from this process. */
async function referenceCosts(poolDir) {
  // The metadata write of every RPC: temp file, fsync, rename, fsync of the directory.
  const atomic = [];
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
  const spawnMs = [];
  for (let i = 0; i < 40; i++) {
    const r = await runTool('true', []);
    if (i >= 10) spawnMs.push(r.ms);
  }
  return { atomic_write_fsync_ms: median(atomic), spawn_true_ms: median(spawnMs) };
}

export async function run(bench, log) {
  const N = envInt('BENCH_CYCLES', 200);
  const WARM = envInt('BENCH_WARMUP', 20, 0);
  const ATTR = envInt('BENCH_ATTRIBUTION_CYCLES', Math.max(20, Math.round(N / 4)), 0);
  const pool = bench.mkdir('pool');
  const pods = bench.mkdir('pods');

  // Pass 1: the measurement, daemon at its production log level.
  const d = await bench.startDaemon({ pool, logLevel: 'info' });
  const c = d.clients;
  log(`  warm-up: ${WARM} cycles`);
  const mkParent = (name) => bench.mkdir(path.join('pods', name));
  for (let i = 0; i < WARM; i++) {
    const name = `bench-warm-${i}`;
    mkParent(name);
    await cycle(c, pods, name, i === 0);
    rmdirSync(path.join(pods, name));
  }
  log(`  measuring: ${N} cycles`);
  const samples = [];
  const names = new Set();
  const ids = new Set();
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
  const nullClient = [];
  for (let i = 0; i < 50 + NULL_CALLS; i++) {
    const t0 = nowMs();
    await c.identity.GetPluginInfo({});
    if (i >= 50) nullClient.push(nowMs() - t0);
  }
  const nullServer = (es) => es.filter((e) => e.msg === 'rpc' && e.method === 'GetPluginInfo').map((e) => e.ms);
  await d.waitForLog((es) => Object.values(serverTimes(es, names, ids)).every((v) => v.length >= N) && nullServer(es).length >= 50 + NULL_CALLS, 5000);
  const server = serverTimes(d.entries, names, ids);
  const nullRpc = { calls: NULL_CALLS, client_median_ms: median(nullClient), client_p99_ms: stats(nullClient).p99, handler_median_ms: median(nullServer(d.entries).slice(50)) };
  await d.stop();

  // Pass 2: shorter, at debug level, to see which tools each handler runs and what they cost.
  let attribution = null;
  if (ATTR > 0) {
    log(`  attribution pass: ${ATTR} cycles at log level debug`);
    const dd = await bench.startDaemon({ pool, logLevel: 'debug' });
    const attrIds = new Set();
    const attrTotals = [];
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
    await dd.waitForLog((es) => es.filter((e) => e.msg === 'rpc' && e.method === 'DeleteVolume' && attrIds.has(e.volume_id)).length >= ATTR, 5000);
    attribution = { cycles: ATTR, cycle_median_ms_at_debug: median(attrTotals), ...execAttribution(dd.entries, attrIds, ATTR) };
    await dd.stop();
  }
  const reference = await referenceCosts(pool);

  // Figures.
  const cycleStats = stats(samples.map((s) => s.total));
  const rpc = {};
  for (const r of RPCS) {
    const client = stats(samples.map((s) => s[r]));
    const srv = server[r].length ? stats(server[r]) : null;
    rpc[r] = { client, server: srv, transport_median_ms: srv ? client.median - srv.median : null };
  }
  const goalMet = cycleStats.median <= GOAL_MS;
  const sumClientMedians = RPCS.reduce((a, r) => a + rpc[r].client.median, 0);
  const sumServerMedians = RPCS.reduce((a, r) => a + (rpc[r].server?.median ?? 0), 0);

  const tables = [
    {
      title: `Cycle latency, ${N} cycles after ${WARM} warm-up (ms, client side)`,
      columns: ['what', 'median', 'p90', 'p99', 'min', 'max'],
      rows: [
        ['cycle (4 RPCs)', cycleStats.median, cycleStats.p90, cycleStats.p99, cycleStats.min, cycleStats.max],
        ...RPCS.map((r) => [r, rpc[r].client.median, rpc[r].client.p90, rpc[r].client.p99, rpc[r].client.min, rpc[r].client.max]),
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
    `cycle median ${cycleStats.median.toFixed(2)} ms (goal <= ${GOAL_MS} ms: ${goalMet ? 'met' : 'NOT met'}), p99 ${cycleStats.p99.toFixed(2)} ms`,
    `sum of per-RPC medians: client ${sumClientMedians.toFixed(2)} ms, handlers ${sumServerMedians.toFixed(2)} ms`,
  ];

  const rpcBars = [];
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
          { label: 'min', value: cycleStats.min, color: COLORS.teal },
          { label: 'median', value: cycleStats.median, color: goalMet ? COLORS.green : COLORS.orange },
          { label: 'p90', value: cycleStats.p90, color: COLORS.blue },
          { label: 'p99', value: cycleStats.p99, color: COLORS.blue },
          { label: 'max', value: cycleStats.max, color: COLORS.grey },
        ],
      },
      {
        title: `Per RPC, medians (ms): client-observed, daemon handler${attribution ? ', external tools inside the handler' : ''}`,
        unit: 'ms',
        bars: rpcBars,
      },
    ],
    notes: [
      'client = gRPC call as the client sees it; handler = the daemon’s own "rpc" log timing; tools = mount/umount etc. (debug pass).',
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
      sum_of_client_medians_ms: sumClientMedians,
      sum_of_handler_medians_ms: sumServerMedians,
      attribution,
      reference_ms: reference,
      null_rpc: nullRpc,
      samples_ms: samples.map((s) => s.total),
    },
    goal: { text: `cycle median <= ${GOAL_MS} ms`, met: goalMet, value: cycleStats.median },
  };
}
