// Preallocating a KubeVirt disk.img: CreateVolume of a Filesystem volume with createDiskImage and
// preallocation, sized so disk.img is BENCH_PREALLOC_GIB GiB (default 10), on
//   - the host's temp directory (ext4 here: fallocate works),
//   - an XFS pool on a loop device the daemon formats itself from a blank device (fallocate works),
//   - an ext2 filesystem on a loop device (no fallocate: the daemon writes zeros, 'full'),
// plus a sparse baseline (no preallocation) on each. Reports the CreateVolume latency as the client
// sees it, the method the daemon recorded in the volume's record, the bytes really allocated for
// disk.img (stat blocks x 512) against its size, the free-space drop, and MB/s where zeros are written.
import { readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Daemon } from '../test/helpers/daemon.js';
import { GiB, MOUNT_CAP, POOL_NAME, envInt, fmtBytes, nowMs } from './lib/common.js';
import type { BenchResult, Say } from './lib/result.js';
import type { Bench } from './lib/scratch.js';
import { median } from './lib/stats.js';
import { allocatedBytes, capacityForDiskImage, freeBytes, makeLoopDevice, releaseLoop, waitTrashEmpty } from './lib/storage.js';
import { COLORS } from './lib/svg.js';
import type { Table } from './lib/table.js';
import { runTool, sh } from './lib/tools.js';

export const title = 'Disk image preallocation: fallocate vs writing zeros';

const CALL_TIMEOUT_MS = 60 * 60_000;
const MARGIN = 2 * GiB;

type Mode = 'sparse' | 'prealloc';
type Method = 'fallocate' | 'full';

interface PoolUnderTest {
  key: string;
  label: string;
  dir: string;
  /** The pool's path in --pool (a directory, or DIR:device=DEV). */
  arg: string;
  expected: Method;
}

interface CreateRun {
  name: string;
  ms: number;
  handler_ms: number;
  method: string;
  image_bytes: number;
  allocated_bytes: number;
  free_drop_bytes: number;
  fallocate_tool_ms: number[];
  zero_fill_started_ms_after_call: number | null;
}

interface DdReference {
  bytes: number;
  ms: number;
  mb_per_s: number;
}

interface PoolRuns {
  pool: string;
  fs_type: string;
  expected_method: Method;
  runs: Partial<Record<Mode, CreateRun[]>>;
  dd_reference?: DdReference;
}

function fsTypeOf(dir: string): string {
  try {
    return sh('findmnt', ['-n', '-o', 'FSTYPE', '-T', dir]).trim();
  } catch {
    return 'unknown';
  }
}

/** One CreateVolume of a disk image volume, measured, checked and deleted again. */
async function oneCreate(d: Daemon, poolDir: string, name: string, capacity: bigint, imageBytes: number, prealloc: boolean): Promise<CreateRun> {
  const c = d.clients;
  sh('sync', []);
  const free0 = freeBytes(poolDir);
  const t0 = nowMs();
  const res = await c.controller.CreateVolume(
    {
      name,
      volume_capabilities: [MOUNT_CAP],
      capacity_range: { required_bytes: String(capacity), limit_bytes: '0' },
      parameters: { storagePool: POOL_NAME, createDiskImage: 'true', ...(prealloc ? { preallocation: 'true' } : {}) },
    },
    CALL_TIMEOUT_MS,
  );
  const ms = nowMs() - t0;
  sh('sync', []);
  const free1 = freeBytes(poolDir);
  const record = JSON.parse(readFileSync(path.join(poolDir, '.hpp/volumes', `${name}.json`), 'utf8')) as { data: string; preallocation?: string };
  const img = path.join(poolDir, record.data, 'disk.img');
  const st = statSync(img);
  if (st.size !== imageBytes) throw new Error(`${img} is ${st.size} bytes, expected ${imageBytes}`);
  const allocated = allocatedBytes(img);
  await d.log.waitForEntries((es) => es.some((e) => e.msg === 'rpc' && e.method === 'CreateVolume' && e.name === name), 5000);
  const rpc = d.log.entries.find((e) => e.msg === 'rpc' && e.method === 'CreateVolume' && e.name === name);
  // Zero-filling: the daemon logs when it gives up on fallocate and then its progress every GiB.
  const building = path.join(poolDir, '.hpp/tmp', name, 'disk.img');
  const fallback = d.log.entries.find((e) => e.msg === 'fallocate not supported here: writing zeros' && e.file === building);
  const fallocExec = d.log.entries.filter((e) => e.msg === 'exec' && typeof e.cmd === 'string' && e.cmd.startsWith('fallocate') && e.cmd.includes(`/${name}/`));
  await c.controller.DeleteVolume({ volume_id: res.volume.volume_id }, CALL_TIMEOUT_MS);
  if (!(await waitTrashEmpty(poolDir))) throw new Error(`trash of ${poolDir} not emptied after deleting ${name}`);
  return {
    name,
    ms,
    handler_ms: rpc?.ms ?? NaN,
    method: record.preallocation ?? '(none recorded)',
    image_bytes: st.size,
    allocated_bytes: allocated,
    free_drop_bytes: free0 - free1,
    fallocate_tool_ms: fallocExec.map((e) => e.ms!),
    zero_fill_started_ms_after_call: fallback ? fallback.at - t0 : null,
  };
}

/**
 * What plain dd writing zeros (8 MiB blocks, like the daemon's chunks, then fsync) gets on the same
 * filesystem, for the same number of bytes (a smaller write could sit in the page cache's dirty
 * allowance and look faster than the device is).
 */
async function ddReference(dir: string, imageBytes: number): Promise<DdReference> {
  const bytes = imageBytes;
  const file = path.join(dir, 'dd-reference.img');
  sh('sync', []);
  const r = await runTool('dd', ['if=/dev/zero', `of=${file}`, 'bs=8M', `count=${bytes / (8 * 1024 * 1024)}`, 'conv=fsync']);
  rmSync(file, { force: true });
  if (r.code !== 0) throw new Error(`dd reference failed: ${r.stderr}`);
  return { bytes, ms: r.ms, mb_per_s: bytes / 1e6 / (r.ms / 1000) };
}

async function measurePool(bench: Bench, log: Say, pool: PoolUnderTest, capacity: bigint, imageBytes: number, plan: Array<{ mode: Mode; n: number }>): Promise<PoolRuns> {
  const d = await bench.startDaemon({ pool: pool.arg, logLevel: 'debug' });
  const fsType = fsTypeOf(pool.dir);
  log(`  pool ${pool.label}: ${pool.dir} (${fsType}), free ${fmtBytes(freeBytes(pool.dir))}`);
  const out: PoolRuns = { pool: pool.label, fs_type: fsType, expected_method: pool.expected, runs: {} };
  try {
    for (const { mode, n } of plan) {
      const runs: CreateRun[] = [];
      for (let i = 0; i < n; i++) {
        const r = await oneCreate(d, pool.dir, `prealloc-${pool.key}-${mode}-${i}`, capacity, imageBytes, mode === 'prealloc');
        runs.push(r);
        const mbps = r.method === 'full' ? `, ${(imageBytes / 1e6 / (r.ms / 1000)).toFixed(0)} MB/s` : '';
        log(`    ${mode.padEnd(8)} run ${i + 1}/${n}: ${r.ms.toFixed(1)} ms, method ${r.method}, allocated ${fmtBytes(r.allocated_bytes)} of ${fmtBytes(r.image_bytes)}${mbps}`);
      }
      out.runs[mode] = runs;
    }
    if (pool.expected === 'full') out.dd_reference = await ddReference(pool.dir, imageBytes);
  } finally {
    await d.stop();
  }
  return out;
}

function summarise(p: PoolRuns, mode: Mode, imageBytes: number) {
  const runs = p.runs[mode] ?? [];
  if (runs.length === 0) return undefined;
  const ms = runs.map((r) => r.ms);
  const methods = [...new Set(runs.map((r) => r.method))].join(',');
  const alloc = median(runs.map((r) => r.allocated_bytes));
  const full = runs.every((r) => r.method === 'full');
  return {
    pool: p.pool,
    fs_type: p.fs_type,
    mode,
    runs: runs.length,
    method: methods,
    median_ms: median(ms),
    min_ms: Math.min(...ms),
    max_ms: Math.max(...ms),
    samples_ms: ms,
    handler_median_ms: median(runs.map((r) => r.handler_ms)),
    allocated_bytes: alloc,
    allocated_ratio: alloc / imageBytes,
    free_drop_bytes: median(runs.map((r) => r.free_drop_bytes)),
    mb_per_s: full ? imageBytes / 1e6 / (median(ms) / 1000) : null,
    fallocate_tool_ms: median(runs.flatMap((r) => r.fallocate_tool_ms)),
    zero_fill_started_ms: full ? median(runs.map((r) => r.zero_fill_started_ms_after_call ?? NaN)) : null,
  };
}

export async function run(bench: Bench, log: Say): Promise<BenchResult> {
  let gib = envInt('BENCH_PREALLOC_GIB', 10);
  const fallocRuns = envInt('BENCH_PREALLOC_RUNS', 3);
  const fullRuns = envInt('BENCH_PREALLOC_FULL_RUNS', 1);
  const sparseRuns = envInt('BENCH_PREALLOC_SPARSE_RUNS', 3);
  const warnings: string[] = [];

  // Host space: the host-directory pool really allocates the image; the ext2 loop file fills up with
  // the zeros written; the XFS loop file stays nearly empty (fallocate writes no data). One at a time.
  const hostFree = freeBytes(bench.dir);
  const need = (g: number) => Number(capacityForDiskImage(g * GiB)) + GiB + MARGIN;
  if (hostFree < need(gib)) {
    const fit = Math.floor((hostFree - MARGIN - GiB) / (1.06 * GiB));
    if (fit < 1) throw new Error(`only ${fmtBytes(hostFree)} free under ${bench.dir}: not enough for even a 1 GiB disk image`);
    const w = `WARNING: ${fmtBytes(hostFree)} free under ${bench.dir} is not enough for a ${gib} GiB disk image (needs ${fmtBytes(need(gib))}); measuring ${fit} GiB instead`;
    log(`  ${w}`);
    warnings.push(w);
    gib = fit;
  }
  const imageBytes = gib * GiB;
  const capacity = capacityForDiskImage(imageBytes);
  log(`  disk.img ${gib} GiB: capacity ${capacity} bytes (CDI overhead 0.055)`);

  const pools: PoolRuns[] = [];
  const plan = (prealloc: number): Array<{ mode: Mode; n: number }> => [
    { mode: 'sparse', n: sparseRuns },
    { mode: 'prealloc', n: prealloc },
  ];

  // (a) the host's temp directory.
  const hostDir = bench.mkdir('pool-host');
  pools.push(await measurePool(bench, log, { key: 'host', label: `host dir (${fsTypeOf(hostDir)})`, dir: hostDir, arg: hostDir, expected: 'fallocate' }, capacity, imageBytes, plan(fallocRuns)));

  // (a') XFS on a loop device, formatted by the daemon from a blank device.
  {
    const loop = makeLoopDevice(path.join(bench.dir, 'xfs.img'), Number(capacity) + 2 * GiB);
    const dir = path.join(bench.dir, 'pool-xfs');
    try {
      pools.push(await measurePool(bench, log, { key: 'xfs', label: 'XFS on loop (daemon-formatted)', dir, arg: `${dir}:device=${loop.device}`, expected: 'fallocate' }, capacity, imageBytes, plan(fallocRuns)));
    } finally {
      await releaseLoop(loop, dir);
    }
  }

  // (b) ext2 on a loop device: no fallocate, so the daemon writes zeros.
  {
    log('  writing the ext2 loop file in full first (a real disk has its blocks; a sparse loop file would make the first writer pay for the host allocating them)');
    const loop = makeLoopDevice(path.join(bench.dir, 'ext2.img'), Number(capacity) + GiB, { prefill: true });
    const dir = bench.mkdir('pool-ext2');
    try {
      // nodiscard: a discard would punch the prefilled blocks out of the loop file again.
      sh('mkfs.ext2', ['-F', '-q', '-m', '0', '-E', 'nodiscard', loop.device]);
      sh('mount', ['-t', 'ext2', loop.device, dir]);
      if (freeBytes(dir) < Number(capacity)) throw new Error(`ext2 pool has ${fmtBytes(freeBytes(dir))} free, less than the volume's ${fmtBytes(Number(capacity))}`);
      pools.push(await measurePool(bench, log, { key: 'ext2', label: 'ext2 on loop (no fallocate)', dir, arg: dir, expected: 'full' }, capacity, imageBytes, plan(fullRuns)));
    } finally {
      await releaseLoop(loop, dir);
    }
  }

  const rows: Array<NonNullable<ReturnType<typeof summarise>> & { expected: string }> = [];
  for (const p of pools) for (const mode of ['sparse', 'prealloc'] as const) {
    const s = summarise(p, mode, imageBytes);
    if (s) rows.push({ ...s, expected: mode === 'sparse' ? 'none' : p.expected_method });
  }
  const prealloced = rows.filter((r) => r.mode === 'prealloc');
  const methodsOk = rows.every((r) => r.method === r.expected);
  const allocatedOk = prealloced.every((r) => r.allocated_ratio >= 1) && rows.filter((r) => r.mode === 'sparse').every((r) => r.allocated_ratio < 0.01);
  const goalMet = methodsOk && allocatedOk;
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

  const tables: Table[] = [
    {
      title: `CreateVolume, Filesystem volume with a ${gib} GiB disk.img (capacity ${fmtBytes(Number(capacity))}), client-side ms`,
      columns: ['pool', 'preallocation', 'method recorded', 'runs', 'median ms', 'min', 'max', 'handler ms', 'allocated', 'alloc/size', 'free used', 'MB/s'],
      rows: rows.map((r) => [
        r.pool,
        r.mode === 'prealloc' ? 'true' : 'false',
        r.method === r.expected ? r.method : `${r.method} (expected ${r.expected})`,
        r.runs,
        r.median_ms,
        r.min_ms,
        r.max_ms,
        r.handler_median_ms,
        fmtBytes(r.allocated_bytes),
        pct(r.allocated_ratio),
        fmtBytes(r.free_drop_bytes),
        r.mb_per_s === null ? '' : r.mb_per_s.toFixed(0),
      ]),
    },
  ];
  const fall = prealloced.filter((r) => r.method === 'fallocate');
  const full = prealloced.filter((r) => r.method === 'full');
  if (fall.length || full.length) {
    tables.push({
      title: 'Where the time goes (medians)',
      columns: ['pool', 'method', 'CreateVolume ms', 'fallocate(1) run ms', 'zero-fill from (ms into call)', 'zero-fill + fsync ms', 'rest ms'],
      rows: prealloced.map((r) => {
        const tool = Number.isFinite(r.fallocate_tool_ms) ? r.fallocate_tool_ms : 0;
        const zeroFrom = r.zero_fill_started_ms ?? NaN;
        const zeroMs = Number.isFinite(zeroFrom) ? r.median_ms - zeroFrom : 0;
        return [r.pool, r.method, r.median_ms, tool, Number.isFinite(zeroFrom) ? zeroFrom : '', r.method === 'full' ? zeroMs : '', r.median_ms - tool - zeroMs];
      }),
    });
  }

  const ddRef = pools.find((p) => p.dd_reference)?.dd_reference;
  if (ddRef) {
    tables.push({
      title: 'Reference: plain dd writing zeros on the same ext2 pool (bs=8M, conv=fsync)',
      columns: ['bytes', 'ms', 'MB/s', 'daemon zero-fill MB/s'],
      rows: [[fmtBytes(ddRef.bytes), ddRef.ms, ddRef.mb_per_s, full[0]?.mb_per_s ?? NaN]],
    });
  }
  const summary = [
    ...warnings,
    ...prealloced.map(
      (r) => `${r.pool}: preallocated ${gib} GiB by ${r.method} in ${r.median_ms >= 1000 ? `${(r.median_ms / 1000).toFixed(2)} s` : `${r.median_ms.toFixed(1)} ms`} (median of ${r.runs})${r.mb_per_s ? `, ${r.mb_per_s.toFixed(0)} MB/s` : ''}; allocated ${pct(r.allocated_ratio)} of the image`,
    ),
    ...rows.filter((r) => r.mode === 'sparse').map((r) => `${r.pool}: sparse baseline ${r.median_ms.toFixed(1)} ms, allocated ${fmtBytes(r.allocated_bytes)}`),
    ...(ddRef ? [`plain dd of ${fmtBytes(ddRef.bytes)} zeros (bs=8M, fsync) on the same ext2 pool: ${ddRef.mb_per_s.toFixed(0)} MB/s`] : []),
    `method as expected (fallocate where supported, zeros on ext2) and images fully allocated: ${goalMet ? 'yes' : 'NO'}`,
  ];

  const short = (pool: string) => pool.replace(' (daemon-formatted)', '').replace(' (no fallocate)', '');
  const color = (r: (typeof rows)[number]) => (r.mode === 'sparse' ? COLORS.grey : r.method === 'full' ? COLORS.orange : COLORS.blue);
  const fast = rows.filter((r) => r.method !== 'full');
  const chart = {
    title: `${title} (${gib} GiB disk.img)`,
    panels: [
      {
        title: `CreateVolume latency without zero-filling (ms): sparse and fallocate; bar = median, circles = runs`,
        unit: 'ms',
        bars: fast.map((r) => ({ label: `${short(r.pool)}, ${r.method}`, value: r.median_ms, color: color(r), points: r.samples_ms })),
      },
      ...(full.length
        ? [
            {
              title: `CreateVolume writing ${gib} GiB of zeros (s)`,
              unit: 's',
              bars: full.map((r) => ({ label: `${short(r.pool)}, full`, value: r.median_ms / 1000, color: COLORS.orange, text: `${(r.median_ms / 1000).toFixed(2)} s, ${r.mb_per_s!.toFixed(0)} MB/s`, points: r.samples_ms.map((x) => x / 1000) })),
            },
          ]
        : []),
    ],
    notes: [
      `Method recorded in <pool>/.hpp/volumes/<name>.json: ${prealloced.map((r) => `${r.pool} → ${r.method}`).join('; ')}.`,
      `Allocated (stat blocks × 512) / size: ${rows.map((r) => `${r.pool} ${r.mode} ${pct(r.allocated_ratio)}`).join('; ')}.`,
      'Loop devices are files on the host temp dir attached with direct I/O; the XFS pool is formatted by the daemon (blank device); the ext2 loop file is written in full before mkfs (no host allocation during the measurement).',
    ],
  };

  return {
    summary,
    tables,
    chart,
    config: { image_gib: gib, image_bytes: imageBytes, capacity_bytes: capacity.toString(), fallocate_runs: fallocRuns, full_runs: fullRuns, sparse_runs: sparseRuns, daemon_log_level: 'debug' },
    figures: { rows, pools },
    goal: { text: 'fallocate where the filesystem supports it, zeros (full) elsewhere; preallocated images fully allocated, sparse ones not', met: goalMet, value: prealloced.map((r) => `${r.pool}: ${r.method}`).join('; ') },
    headlines: [
      ...prealloced.map((r) => ({
        metric: `preallocate ${gib} GiB disk.img, ${r.pool} (${r.method})`,
        value: r.median_ms,
        unit: 'ms',
        detail: r.mb_per_s ? `${r.mb_per_s.toFixed(0)} MB/s` : `allocated ${pct(r.allocated_ratio)}`,
      })),
      { metric: 'preallocation method and allocation as designed', value: goalMet ? 'yes' : 'no', goal: 'fallocate where supported, full on ext2, 100% allocated', met: goalMet },
    ],
  };
}
