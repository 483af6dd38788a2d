#!/usr/bin/env node
// The headline figures of every benchmark result in bench/results/*.json against the project's goals,
// with a met / not-met column: bench/results/summary.json, summary.svg and a printed table.
// Run by bench/run.ts after the benchmarks (`node dist-bench/bench/run.js summary` only rebuilds it), or
// on its own: `node dist-bench/bench/summary.js`. Results are read as they are; each row says when and on which commit
// it was measured, so a stale result is visible as such.
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RESULTS_DIR } from './lib/common.js';
import type { Goal, Headline } from './lib/result.js';
import { roundDeep } from './lib/stats.js';
import { COLORS } from './lib/svg.js';
import { fmtNum, formatTable } from './lib/table.js';

interface Dist {
  median?: number;
  p99?: number;
}

/** The parts of a result file (bench/results/<name>.json) read here; files of older runs may lack any. */
interface ResultFile {
  machine?: { date?: string; driver_commit?: string; driver_tree_dirty?: boolean };
  run_seconds?: number;
  cleanup?: unknown;
  summary?: string[];
  config?: { creates?: number; inflight?: number; sizes_gib?: number[] };
  headlines?: Headline[];
  goal?: Goal;
  figures?: {
    go_client?: { cycle_ms: Dist } | null;
    cycle_ms?: Dist;
    ratio?: { write?: number; read?: number };
    creates?: { rate?: number; client_ms?: Dist };
    deletes?: { rate?: number; client_ms?: Dist };
    rss_bytes?: { idle?: number; with_volumes?: number };
    restart?: { sigterm?: { ms?: Dist }; kill9?: { ms?: Dist } };
  };
}

/** One row of the headline table; met null: shown, not judged. */
interface Row {
  benchmark?: string;
  goal_id?: string;
  metric: string;
  value: string;
  goal: string;
  met: boolean | null;
  note?: string;
  measured?: string;
}

interface GoalStatus {
  goal: string;
  benchmark: string;
  status: string;
  figures: string;
}

interface Source {
  date?: string;
  commit: string;
  run_seconds?: number;
  cleanup?: unknown;
  warnings: string[];
}

export interface Summary {
  generated: string;
  goals: GoalStatus[];
  rows: Row[];
  sources: Record<string, Source>;
}

/** The goals, in the order they are listed; `bench` names the result that measures each. */
const GOALS = [
  { id: 'cycle', bench: 'cycle', goal: 'cycle median ≤ 5 ms' },
  { id: 'creates', bench: 'throughput', goal: 'creates ≥ 300/s and p99 < 50 ms' },
  { id: 'rss', bench: 'throughput', goal: 'RSS < 120 MB with 1,000 volumes' },
  { id: 'restart', bench: 'throughput', goal: 'restart with 1,000 volumes < 2 s' },
  { id: 'loop-io', bench: 'loop-io', goal: 'loop I/O ≥ 90% of raw' },
  { id: 'snapshot', bench: 'snapshot', goal: 'snapshot reflink O(1)' },
  { id: 'prealloc', bench: 'prealloc', goal: 'fallocate where supported, zeros elsewhere' },
];

const num = (x: unknown, unit = ''): string => (typeof x === 'number' ? `${fmtNum(x)}${unit ? ` ${unit}` : ''}` : String(x ?? ''));
const pct = (x: number | undefined): string => `${((x ?? NaN) * 100).toFixed(1)}%`;
/** A comparison with a figure a file may lack: false then, as for undefined in plain JS. */
const n = (x: number | undefined): number => x ?? NaN;

/** Rows for one result file: [{ goal_id?, metric, value, goal, met }] (met: true/false/null = no goal). */
function rowsOf(name: string, r: ResultFile): Row[] {
  const f = r.figures ?? {};
  switch (name) {
    case 'cycle':
      // The goal is judged with grpc-go (kubelet's and the sidecars' client) when the run had Go.
      return [
        ...(f.go_client
          ? [
              { goal_id: 'cycle', metric: 'CRUD cycle median, grpc-go client (Create, NodePublish, NodeUnpublish, Delete)', value: num(f.go_client.cycle_ms.median, 'ms'), goal: '≤ 5 ms', met: n(f.go_client.cycle_ms.median) <= 5 },
              { metric: 'CRUD cycle p99, grpc-go client', value: num(f.go_client.cycle_ms.p99, 'ms'), goal: '', met: null },
            ]
          : []),
        { goal_id: f.go_client ? undefined : 'cycle', metric: 'CRUD cycle median, grpc-js client', value: num(f.cycle_ms?.median, 'ms'), goal: f.go_client ? '' : '≤ 5 ms', met: f.go_client ? null : n(f.cycle_ms?.median) <= 5 },
        { metric: 'CRUD cycle p99, grpc-js client', value: num(f.cycle_ms?.p99, 'ms'), goal: '', met: null },
      ];
    case 'loop-io':
      return [
        { goal_id: 'loop-io', metric: 'loop device write vs raw file (O_DIRECT)', value: pct(f.ratio?.write), goal: '≥ 90%', met: n(f.ratio?.write) >= 0.9 },
        { goal_id: 'loop-io', metric: 'loop device read vs raw file (O_DIRECT)', value: pct(f.ratio?.read), goal: '≥ 90%', met: n(f.ratio?.read) >= 0.9 },
      ];
    case 'throughput': {
      const c = f.creates;
      const vols = r.config?.creates;
      const out: Row[] = [
        { goal_id: 'creates', metric: `CreateVolume throughput (${vols}, ${r.config?.inflight} in flight)`, value: num(c?.rate, '/s'), goal: '≥ 300/s', met: n(c?.rate) >= 300 },
        { goal_id: 'creates', metric: 'CreateVolume p99 latency', value: num(c?.client_ms?.p99, 'ms'), goal: '< 50 ms', met: n(c?.client_ms?.p99) < 50 },
        { metric: `DeleteVolume throughput / p99`, value: `${num(f.deletes?.rate, '/s')}, p99 ${num(f.deletes?.client_ms?.p99, 'ms')}`, goal: '', met: null },
        { goal_id: 'rss', metric: `daemon RSS with ${vols} volumes (idle after start ${num(n(f.rss_bytes?.idle) / 1e6, 'MB')})`, value: num(n(f.rss_bytes?.with_volumes) / 1e6, 'MB'), goal: '< 120 MB', met: n(f.rss_bytes?.with_volumes) < 120e6 },
        { goal_id: 'restart', metric: `restart after SIGTERM, ${vols} volumes (spawn → full ListVolumes)`, value: num(f.restart?.sigterm?.ms?.median, 'ms'), goal: '< 2000 ms', met: n(f.restart?.sigterm?.ms?.median) < 2000 },
        { goal_id: 'restart', metric: `restart after kill -9, ${vols} volumes`, value: num(f.restart?.kill9?.ms?.median, 'ms'), goal: '< 2000 ms', met: n(f.restart?.kill9?.ms?.median) < 2000 },
      ];
      // A goal stated for 1,000 volumes is not judged on a smaller run.
      if (vols !== undefined && vols < 1000) for (const o of out) if (o.goal_id) o.note = `measured with ${vols} volumes, not 1,000`;
      return out;
    }
    default:
      break;
  }
  if (Array.isArray(r.headlines)) {
    // The O(1) claim is about big images: a run without a 10 GiB one is shown but not judged.
    const small = name === 'snapshot' && Math.max(...(r.config?.sizes_gib ?? [0])) < 10 ? `largest image ${Math.max(...(r.config?.sizes_gib ?? [0]))} GiB, not 10` : undefined;
    return r.headlines.map((h) => ({
      ...(small && h.goal !== undefined ? { note: small } : {}),
      goal_id: h.goal !== undefined ? (GOALS.find((g) => g.bench === name)?.id ?? name) : undefined,
      metric: h.metric,
      value: `${num(h.value, h.unit)}${h.detail ? ` (${h.detail})` : ''}`,
      goal: h.goal ?? '',
      met: h.goal !== undefined ? h.met === true : null,
    }));
  }
  if (r.goal) return [{ goal_id: name, metric: r.goal.text, value: typeof r.goal.value === 'object' ? JSON.stringify(r.goal.value) : num(r.goal.value), goal: r.goal.text, met: r.goal.met === true }];
  return [];
}

export function buildSummary(dir = RESULTS_DIR): Summary {
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'summary.json').sort() : [];
  const rows: Row[] = [];
  const sources: Record<string, Source> = {};
  for (const file of files) {
    const name = file.replace(/\.json$/, '');
    let r: ResultFile;
    try {
      r = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as ResultFile;
    } catch (err) {
      rows.push({ benchmark: name, metric: `unreadable result: ${(err as Error).message}`, value: '', goal: '', met: null });
      continue;
    }
    const m = r.machine ?? {};
    sources[name] = { date: m.date, commit: `${m.driver_commit ?? '?'}${m.driver_tree_dirty ? '+dirty' : ''}`, run_seconds: r.run_seconds, cleanup: r.cleanup, warnings: (r.summary ?? []).filter((s) => s.startsWith('WARNING')) };
    for (const row of rowsOf(name, r)) {
      // A row whose goal is judged on other conditions than the goal's (e.g. fewer volumes) is not counted.
      const met = row.note ? null : row.met;
      rows.push({ benchmark: name, ...row, met, measured: `${(m.date ?? '').slice(0, 16).replace('T', ' ')} ${sources[name].commit}` });
    }
  }
  // Every goal, met only when all its rows are.
  const goals = GOALS.map((g): GoalStatus => {
    const mine = rows.filter((r) => r.goal_id === g.id);
    const judged = mine.filter((r) => r.met !== null);
    const status = judged.length === 0 ? (mine.length ? 'not judged' : 'not measured') : judged.every((r) => r.met) ? 'met' : 'NOT met';
    return { goal: g.goal, benchmark: g.bench, status, figures: mine.map((r) => `${r.value}${r.note ? ` (${r.note})` : ''}`).join('; ') };
  });
  return { generated: new Date().toISOString(), goals, rows, sources };
}

function renderSummarySvg(s: Summary): string {
  const esc = (x: unknown) => String(x).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const W = 1100;
  const cols = [
    { key: 'goal', x: 16, w: 300 },
    { key: 'status', x: 330, w: 90 },
    { key: 'figures', x: 430, w: 660 },
  ] as const;
  const lines: string[] = [];
  let y = 30;
  lines.push(`<text x="16" y="${y}" class="title">Benchmark summary: goals</text>`);
  y += 20;
  lines.push(`<text x="16" y="${y}" class="sub">generated ${esc(s.generated.slice(0, 16).replace('T', ' '))} UTC from bench/results/*.json; figures as last measured</text>`);
  y += 30;
  const header = { goal: 'goal', status: 'status', figures: 'measured' } as const;
  for (const c of cols) lines.push(`<text x="${c.x}" y="${y}" class="head">${esc(header[c.key])}</text>`);
  y += 8;
  lines.push(`<line x1="16" y1="${y}" x2="${W - 16}" y2="${y}" class="rule"/>`);
  const wrap = (text: string, chars: number) => {
    const words = String(text).split(' ');
    const out: string[] = [''];
    for (const w of words) {
      if ((out.at(-1) + ' ' + w).trim().length > chars && out.at(-1)) out.push(w);
      else out[out.length - 1] = `${out.at(-1)} ${w}`.trim();
    }
    return out;
  };
  for (const g of s.goals) {
    const fig = wrap(g.figures || '—', 100);
    const goalLines = wrap(g.goal, 44);
    const h = Math.max(fig.length, goalLines.length) * 16 + 10;
    const color = g.status === 'met' ? COLORS.green : g.status === 'NOT met' ? COLORS.red : COLORS.grey;
    lines.push(`<rect x="${cols[1].x - 4}" y="${y + 6}" width="86" height="20" rx="3" fill="${color}"/>`);
    lines.push(`<text x="${cols[1].x + 39}" y="${y + 20}" class="badge">${esc(g.status)}</text>`);
    goalLines.forEach((l, i) => lines.push(`<text x="${cols[0].x}" y="${y + 20 + i * 16}" class="cell">${esc(l)}</text>`));
    fig.forEach((l, i) => lines.push(`<text x="${cols[2].x}" y="${y + 20 + i * 16}" class="cell">${esc(l)}</text>`));
    y += h + 8;
    lines.push(`<line x1="16" y1="${y}" x2="${W - 16}" y2="${y}" class="thin"/>`);
  }
  y += 24;
  lines.push(`<text x="16" y="${y}" class="head">headline figures</text>`);
  for (const r of s.rows) {
    y += 17;
    const mark = r.met === true ? '✓' : r.met === false ? '✗' : '·';
    const color = r.met === true ? COLORS.green : r.met === false ? COLORS.red : '#666';
    lines.push(`<text x="16" y="${y}" class="cell" fill="${color}">${mark}</text>`);
    lines.push(`<text x="32" y="${y}" class="cell">${esc(`${r.benchmark}: ${r.metric}`.slice(0, 95))}</text>`);
    lines.push(`<text x="720" y="${y}" class="cell">${esc(String(r.value).slice(0, 40))}</text>`);
    lines.push(`<text x="960" y="${y}" class="small">${esc(r.goal.length > 26 ? `${r.goal.slice(0, 25)}…` : r.goal)}</text>`);
  }
  y += 24;
  for (const [name, src] of Object.entries(s.sources)) {
    lines.push(`<text x="16" y="${y}" class="small">${esc(`${name}: measured ${(src.date ?? '?').slice(0, 16).replace('T', ' ')} UTC on driver ${src.commit}${src.warnings.length ? ` — ${src.warnings.join(' ')}` : ''}`.slice(0, 180))}</text>`);
    y += 15;
  }
  y += 10;
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}">
<style>
  text { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; fill: #222; }
  .title { font-size: 17px; font-weight: 600; }
  .sub { font-size: 11.5px; fill: #555; }
  .head { font-size: 12.5px; font-weight: 600; }
  .cell { font-size: 12px; }
  .small { font-size: 10.5px; fill: #555; }
  .badge { font-size: 11.5px; font-weight: 600; fill: #fff; text-anchor: middle; }
  .rule { stroke: #888; stroke-width: 1; }
  .thin { stroke: #e4e4e4; stroke-width: 1; }
</style>
<rect x="0" y="0" width="${W}" height="${y}" fill="#ffffff"/>
${lines.join('\n')}
</svg>
`;
}

/** Build, write summary.json and summary.svg, print the tables; returns the summary. */
export function writeSummary(say = (l: string) => void process.stdout.write(`${l}\n`), dir = RESULTS_DIR): Summary {
  const s = buildSummary(dir);
  writeFileSync(path.join(dir, 'summary.json'), `${JSON.stringify(roundDeep(s), null, 2)}\n`);
  writeFileSync(path.join(dir, 'summary.svg'), renderSummarySvg(s));
  say(`\n${formatTable({ title: 'Goals', columns: ['goal', 'status', 'measured'], rows: s.goals.map((g) => [g.goal, g.status, g.figures || '-']) })}`);
  say(
    `\n${formatTable({
      title: 'Headline figures',
      columns: ['benchmark', 'metric', 'value', 'goal', 'met', 'measured'],
      rows: s.rows.map((r) => [r.benchmark, r.metric, r.value, r.goal, r.met === true ? 'met' : r.met === false ? 'NOT met' : r.note ?? '-', r.measured ?? '']),
    })}`,
  );
  say(`wrote ${path.relative(process.cwd(), path.join(dir, 'summary.json'))}, ${path.relative(process.cwd(), path.join(dir, 'summary.svg'))}`);
  return s;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) writeSummary();
