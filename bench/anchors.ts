// This driver side by side with the two Go drivers of bench/lib/anchors.ts, driven by the same grpc-go
// client (bench/go-client), each as a plain process on a unix socket with a pool directory, the drivers
// alternating round after round (the machine is noisy: the spread is over the rounds). Per round and
// driver: RSS idle, the volume cycle, CreateVolume throughput with 16 in flight, RSS with the volumes,
// restarts (spawn until a ListVolumes returns them all), then every volume deleted. On ext4 (the temp
// dir's filesystem) and on XFS on a loop device. Ratios are ours / theirs: below 1 is better.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { DRIVER_JS } from '../test/helpers/daemon.js';
import { buildAnchors, type AnchorBuild } from './lib/anchors.js';
import { BENCH_DIR, GiB, MiB, NODE_NAME, POOL_NAME, envInt, nowMs, sleep } from './lib/common.js';
import type { BenchResult, Say } from './lib/result.js';
import type { Bench } from './lib/scratch.js';
import { makeLoopDevice } from './lib/storage.js';
import { median, stats } from './lib/stats.js';
import { COLORS, type Bar } from './lib/svg.js';
import type { Table } from './lib/table.js';
import { sh } from './lib/tools.js';
import { procStatusBytes } from './lib/usage.js';

export const title = 'Side by side with kubevirt hostpath-provisioner and csi-driver-host-path (grpc-go client)';

type DriverKey = 'ours' | 'hpp' | 'chp';

interface Driver {
  key: DriverKey;
  title: string;
  argv(socket: string, pool: string): string[];
}

interface RoundFigures {
  rss_idle_bytes: number;
  cycle_median_ms: number;
  creates_per_s: number;
  create_p99_ms: number;
  rss_volumes_bytes: number;
  restart_ms: number[];
}

const FIGURES: { key: keyof RoundFigures; label: string; unit: string }[] = [
  { key: 'cycle_median_ms', label: 'cycle Create→Publish→Unpublish→Delete, median', unit: 'ms' },
  { key: 'creates_per_s', label: 'CreateVolume throughput, 16 in flight', unit: '/s' },
  { key: 'create_p99_ms', label: 'CreateVolume p99, 16 in flight', unit: 'ms' },
  { key: 'rss_idle_bytes', label: 'RSS idle', unit: 'MB' },
  { key: 'rss_volumes_bytes', label: 'RSS with the volumes', unit: 'MB' },
  { key: 'restart_ms', label: 'restart: spawn → full ListVolumes, median', unit: 'ms' },
];

function drivers(built: AnchorBuild[]): { list: Driver[]; missing: string[] } {
  const list: Driver[] = [
    {
      key: 'ours',
      title: 'this driver (Node)',
      argv: (socket, pool) => [process.execPath, DRIVER_JS, '--endpoint', `unix://${socket}`, '--node-name', NODE_NAME, '--log-level', 'info', '--pool', `${POOL_NAME}=${pool}`],
    },
  ];
  const missing: string[] = [];
  for (const b of built) {
    if ('unavailable' in b) {
      missing.push(`${b.spec.key}: ${b.unavailable}`);
      continue;
    }
    const bin = b.binary;
    list.push(
      b.spec.key === 'hpp'
        ? {
            key: 'hpp',
            title: `${b.spec.title} ${b.spec.commit.slice(0, 12)}`,
            argv: (socket, pool) => [bin, '--endpoint', `unix://${socket}`, '--nodeid', NODE_NAME, '--version', 'bench', '--datadir', JSON.stringify([{ name: POOL_NAME, path: pool }])],
          }
        : {
            key: 'chp',
            title: `${b.spec.title} ${b.spec.commit.slice(0, 12)}`,
            argv: (socket, pool) => [bin, '--endpoint', `unix://${socket}`, '--nodeid', NODE_NAME, '--statedir', pool],
          },
    );
  }
  return { list, missing };
}

/** A driver process, its output into a file (a pipe nobody reads would block it). */
class Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  constructor(argv: string[], logFile: string) {
    const fd = openSync(logFile, 'a');
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(t);
  }
}

function goClient(bench: Bench): string {
  const binary = path.join(bench.dir, 'csi-cycle');
  const built = spawnSync('go', ['build', '-o', binary, '.'], { cwd: path.join(BENCH_DIR, 'go-client'), encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`go build of bench/go-client failed: ${built.stderr}`);
  return binary;
}

function runClient(binary: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`go-client ${args.join(' ')} exited with ${code}: ${err.trim()}`))));
  });
}

/** Spawn a driver and wait until ListVolumes returns `n` volumes; the ms from spawn to that answer. */
async function startTimed(client: string, d: Driver, socket: string, pool: string, logFile: string, n: number): Promise<{ proc: Proc; ms: number }> {
  const waiter = runClient(client, ['-mode', 'waitlist', '-endpoint', `unix://${socket}`, '-pods', '-', '-pool', '-', '-count', String(n)]);
  await sleep(20); // the poller is running before the driver is spawned
  const t0 = performance.timeOrigin + performance.now();
  const proc = new Proc(d.argv(socket, pool), logFile);
  const exited = proc.exited.then((code) => {
    throw new Error(`${d.key} exited with ${code} while starting; see ${logFile}`);
  });
  const out = (await Promise.race([waiter, exited])) as string;
  const { done_unix_ns } = JSON.parse(out) as { done_unix_ns: number };
  return { proc, ms: done_unix_ns / 1e6 - t0 };
}

/** What a bare `node -e 0` costs here: the part of our start-up that is Node's own. */
function nodeStartMs(): number {
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = nowMs();
    spawnSync(process.execPath, ['-e', '0']);
    xs.push(nowMs() - t0);
  }
  return median(xs);
}

async function oneRound(
  bench: Bench,
  client: string,
  d: Driver,
  where: { fs: string; base: string },
  round: number,
  cfg: { cycles: number; warmup: number; creates: number; inflight: number; restarts: number; createMiB: number },
): Promise<RoundFigures> {
  const tag = `${where.fs}-${d.key}-${round}`;
  const pool = path.join(where.base, `pool-${tag}`);
  const pods = path.join(where.base, `pods-${tag}`);
  mkdirSync(pool, { recursive: true });
  mkdirSync(pods, { recursive: true });
  const socket = path.join(bench.dir, `${tag}.sock`);
  const logFile = path.join(bench.dir, `${tag}.log`);
  const endpoint = `unix://${socket}`;
  let { proc } = await startTimed(client, d, socket, pool, logFile, 0);
  try {
    await sleep(500);
    const rssIdle = procStatusBytes(proc.child.pid!, 'VmRSS');
    const cyc = JSON.parse(await runClient(client, ['-endpoint', endpoint, '-pods', pods, '-pool', POOL_NAME, '-cycles', String(cfg.cycles), '-warmup', String(cfg.warmup), '-null-calls', '0', '-prefix', `c${round}`])) as { cycle_ms: number[] };
    const cr = JSON.parse(await runClient(client, ['-mode', 'creates', '-endpoint', endpoint, '-pods', pods, '-pool', POOL_NAME, '-count', String(cfg.creates), '-inflight', String(cfg.inflight), '-size', String(cfg.createMiB * MiB), '-prefix', `t${round}`])) as { call_ms: number[]; wall_ms: number };
    await sleep(500);
    const rssFull = procStatusBytes(proc.child.pid!, 'VmRSS');
    const restarts: number[] = [];
    for (let i = 0; i < cfg.restarts; i++) {
      await proc.stop();
      const s = await startTimed(client, d, socket, pool, logFile, cfg.creates);
      proc = s.proc;
      restarts.push(s.ms);
    }
    await runClient(client, ['-mode', 'deleteall', '-endpoint', endpoint, '-pods', pods, '-pool', POOL_NAME, '-inflight', String(cfg.inflight)]);
    return {
      rss_idle_bytes: rssIdle,
      cycle_median_ms: median(cyc.cycle_ms),
      creates_per_s: cfg.creates / (cr.wall_ms / 1000),
      create_p99_ms: stats(cr.call_ms).p99,
      rss_volumes_bytes: rssFull,
      restart_ms: restarts,
    };
  } finally {
    await proc.stop();
  }
}

/** An XFS filesystem on a loop device mounted under the scratch directory (cleaned up with it). */
function xfsBase(bench: Bench): string {
  const loop = makeLoopDevice(path.join(bench.dir, 'xfs.img'), 64 * GiB, { directIo: false });
  sh('mkfs.xfs', ['-q', '-m', 'reflink=1', loop.device]);
  const mnt = bench.mkdir('xfs');
  sh('mount', [loop.device, mnt]);
  return mnt;
}

const one = (f: RoundFigures, k: keyof RoundFigures): number => (k === 'restart_ms' ? median(f.restart_ms) : (f[k] as number));
const show = (v: number, unit: string) => (unit === 'MB' ? v / 1e6 : v);

export async function run(bench: Bench, log: Say): Promise<BenchResult> {
  const ROUNDS = envInt('BENCH_ANCHOR_ROUNDS', 3);
  const cfg = {
    cycles: envInt('BENCH_CYCLES', 200),
    warmup: envInt('BENCH_WARMUP', 20, 0),
    creates: envInt('BENCH_CREATES', 1000),
    inflight: envInt('BENCH_INFLIGHT', 16),
    restarts: envInt('BENCH_RESTARTS', 3),
    createMiB: envInt('BENCH_CREATE_MIB', 16),
  };
  const fsList = (process.env.BENCH_ANCHOR_FS ?? 'ext4,xfs').split(',').filter(Boolean);
  const built = buildAnchors(log);
  const { list, missing } = drivers(built);
  for (const m of missing) log(`  anchor unavailable: ${m}`);
  const client = goClient(bench);
  const nodeMs = nodeStartMs();
  const results: Record<string, Record<DriverKey, RoundFigures[]>> = {};
  for (const fs of fsList) {
    const base = fs === 'xfs' ? xfsBase(bench) : bench.mkdir('ext4');
    results[fs] = { ours: [], hpp: [], chp: [] };
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate the order too, so no driver always runs right after the same one.
      const order = r % 2 === 0 ? list : [...list].reverse();
      for (const d of order) {
        const f = await oneRound(bench, client, d, { fs, base }, r, cfg);
        results[fs][d.key].push(f);
        log(
          `  ${fs} round ${r + 1}/${ROUNDS} ${d.key}: cycle ${f.cycle_median_ms.toFixed(2)} ms, ${f.creates_per_s.toFixed(0)} creates/s (p99 ${f.create_p99_ms.toFixed(1)} ms), RSS ${(f.rss_idle_bytes / 1e6).toFixed(1)}/${(f.rss_volumes_bytes / 1e6).toFixed(1)} MB, restart ${f.restart_ms.map((x) => x.toFixed(0)).join('/')} ms`,
        );
      }
    }
  }

  // Per figure: each driver's spread over the rounds, and our ratio to each anchor round by round.
  const tables: Table[] = [];
  const figures: Record<string, unknown> = { node_start_ms: nodeMs, anchors: built.map((b) => ('unavailable' in b ? { key: b.spec.key, unavailable: b.unavailable } : { key: b.spec.key, module: b.spec.module, commit: b.spec.commit, source: b.source })) };
  const headlines: BenchResult['headlines'] = [];
  const bars: Bar[] = [];
  for (const fs of fsList) {
    const res = results[fs]!;
    const rows: (string | number)[][] = [];
    const perFs: Record<string, unknown> = {};
    for (const fig of FIGURES) {
      const vals = (k: DriverKey) => res[k].map((f) => show(one(f, fig.key), fig.unit));
      const spread = (xs: number[]) => (xs.length ? `${Math.min(...xs).toFixed(xs[0]! < 10 ? 2 : 0)}–${Math.max(...xs).toFixed(xs[0]! < 10 ? 2 : 0)}` : 'n/a');
      const ratio = (k: DriverKey) => {
        const ours = vals('ours');
        const them = vals(k);
        if (!them.length) return { text: 'n/a', min: NaN, max: NaN };
        const rs = ours.map((o, i) => o / them[i]!);
        return { text: `${Math.min(...rs).toFixed(2)}–${Math.max(...rs).toFixed(2)}`, min: Math.min(...rs), max: Math.max(...rs) };
      };
      const rh = ratio('hpp');
      const rc = ratio('chp');
      rows.push([`${fig.label} (${fig.unit})`, spread(vals('ours')), spread(vals('hpp')), spread(vals('chp')), rh.text, rc.text]);
      perFs[fig.key] = { ours: vals('ours'), hpp: vals('hpp'), chp: vals('chp'), ratio_hpp: [rh.min, rh.max], ratio_chp: [rc.min, rc.max] };
      headlines.push({ metric: `${fs}: ${fig.label}, ours/HPP`, value: rh.text, detail: `ours ${spread(vals('ours'))} ${fig.unit}, HPP ${spread(vals('hpp'))}, chp ${spread(vals('chp'))}` });
      if (fig.key === 'cycle_median_ms') {
        for (const k of ['ours', 'hpp', 'chp'] as const) if (vals(k).length) bars.push({ label: `${fs} ${k}`, value: median(vals(k)), points: vals(k), color: k === 'ours' ? COLORS.blue : COLORS.grey });
      }
    }
    figures[fs] = perFs;
    tables.push({ title: `${fs}: ${ROUNDS} alternating rounds, spread over the rounds (ratio = ours / theirs, below 1 is better)`, columns: ['figure', 'ours', 'kubevirt HPP', 'csi-driver-host-path', 'ours/HPP', 'ours/chp'], rows });
  }
  const panel = (key: keyof RoundFigures, unit: string, label: string) => ({
    title: label,
    unit,
    bars: fsList.flatMap((fs) =>
      (['ours', 'hpp', 'chp'] as const)
        .filter((k) => results[fs]![k].length > 0)
        .map((k) => {
          const xs = results[fs]![k].map((f) => show(one(f, key), unit));
          return { label: `${fs} ${k}`, value: median(xs), points: xs, color: k === 'ours' ? COLORS.blue : COLORS.grey };
        }),
    ),
  });
  return {
    summary: [
      ...missing.map((m) => `anchor unavailable: ${m}`),
      `bare node -e 0 takes ${nodeMs.toFixed(0)} ms here (part of our restart figure)`,
      ...tables.flatMap((t) => t.rows.map((r) => `${(t.title ?? '').split(':')[0]}: ${r[0]}: ours ${r[1]}, HPP ${r[2]}, chp ${r[3]}, ours/HPP ${r[4]}, ours/chp ${r[5]}`)),
    ],
    tables,
    chart: {
      title,
      panels: [
        { title: 'Volume cycle median, grpc-go client (ms; dots: rounds)', unit: 'ms', bars },
        panel('creates_per_s', '/s', `CreateVolume per second, ${cfg.creates} with ${cfg.inflight} in flight`),
        panel('create_p99_ms', 'ms', 'CreateVolume p99 (ms)'),
        panel('rss_volumes_bytes', 'MB', `RSS with ${cfg.creates} volumes (MB)`),
        panel('restart_ms', 'ms', `restart with ${cfg.creates} volumes: spawn → full ListVolumes (ms)`),
      ],
      notes: [`ours = this driver; hpp = kubevirt hostpath-provisioner cmd/plugin; chp = csi-driver-host-path hostpathplugin; ${ROUNDS} rounds alternating, order reversed every other round.`, `node -e 0: ${nodeMs.toFixed(0)} ms.`],
    },
    config: { rounds: ROUNDS, filesystems: fsList, ...cfg },
    figures,
    headlines,
    goal: { text: 'cycle ≤ 0.8× HPP (ext4), ≤ 1.0× (XFS); creates ≥ 1.0× HPP; restart ≤ 100 ms after the process is up; RSS ≤ 45/55 MB', met: false, value: null },
  };
}
