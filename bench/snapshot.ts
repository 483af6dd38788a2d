// Snapshot, restore and clone of a KubeVirt disk image (BENCH_SNAP_GIB, default "1,10" GiB) on
//   - an XFS pool on a loop device, formatted by the daemon from a blank device (reflink=1): FICLONE,
//   - the host's temp directory (ext4 here: no reflink, so a sparse-aware copy).
// Each source volume's disk.img is first filled with non-zero data (a 64 MiB random chunk, repeated
// with a per-chunk counter, fsynced) so that every byte is allocated and a copy has real work to do.
// Then CreateSnapshot, CreateVolume from the snapshot (restore) and CreateVolume from the volume (clone)
// are timed as the client sees them, with the page cache dropped before each, the drop in free space
// (statfs, after sync), and the method the daemon recorded (.hpp/snapshot-records/<name>.json
// `method`; the volume record's contentSource.method). At debug level the daemon logs the cp it runs,
// which splits a copy into cp and the fsync/commit after it.
import { randomFillSync } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { Daemon } from '../test/helpers/daemon.js';
import type { Msg } from '../test/helpers/csi-client.js';
import { GiB, MiB, MOUNT_CAP, POOL_NAME, envInt, fmtBytes, nowMs } from './lib/common.js';
import type { BenchResult, Say } from './lib/result.js';
import type { Bench } from './lib/scratch.js';
import { median } from './lib/stats.js';
import { allocatedBytes, capacityForDiskImage, freeBytes, makeLoopDevice, releaseLoop, settleCaches, waitTrashEmpty } from './lib/storage.js';
import { COLORS } from './lib/svg.js';
import type { Table } from './lib/table.js';
import { sh } from './lib/tools.js';

export const title = 'Snapshot, restore and clone of disk images: reflink vs copy';

const OPS = ['snapshot', 'restore', 'clone'] as const;
type Op = (typeof OPS)[number];
const perOp = <T>(f: (op: Op) => T): Record<Op, T> => Object.fromEntries(OPS.map((op) => [op, f(op)])) as Record<Op, T>;

interface PoolUnderTest {
  key: string;
  label: string;
  dir: string;
}

interface Sample {
  ms: number;
  free_used_bytes: number;
  method: string;
  handler_ms: number;
  cp_ms: number;
  cp_runs: number;
}

interface OpFigures {
  method: string;
  median_ms: number;
  samples_ms: number[];
  handler_median_ms: number;
  cp_median_ms: number;
  free_used_bytes: number;
  mb_per_s: number | null;
}

interface SizeResult {
  pool: string;
  pool_key: string;
  gib: number;
  image_bytes: number;
  capacity_bytes: string;
  source_extents: number;
  fill_ms: number;
  fill_mb_per_s: number;
  reps: number;
  ops: Record<Op, OpFigures>;
}

/** A volume record's fields read here. */
interface VolumeRecord {
  data: string;
  contentSource?: { method?: string };
}

const readJson = <T>(file: string): T => JSON.parse(readFileSync(file, 'utf8')) as T;
const CALL_TIMEOUT_MS = 60 * 60_000;
const CHUNK = 64 * MiB;
const MARGIN = 3 * GiB;
/** O(1): growing the image x10 may at most double the time, and the data is not duplicated. */
const O1_TIME_RATIO = 2;
const O1_SPACE_SHARE = 0.01;

function parseSizes(): number[] {
  const raw = process.env.BENCH_SNAP_GIB ?? '1,10';
  const sizes = raw.split(',').map((s) => Number(s.trim()));
  if (sizes.length === 0 || sizes.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`BENCH_SNAP_GIB=${raw} must be a list of whole GiB, e.g. 1,10`);
  return [...new Set(sizes)].sort((a, b) => a - b);
}

/** Fill `file` (already `bytes` long) with non-compressible, non-repeating data and fsync it. */
async function fillImage(file: string, bytes: number, chunk: Buffer): Promise<number> {
  const fh = await open(file, 'r+');
  const t0 = nowMs();
  try {
    let off = 0;
    for (let i = 0; off < bytes; i++) {
      chunk.writeBigUInt64LE(BigInt(i), 0);
      const n = Math.min(chunk.length, bytes - off);
      await fh.write(chunk, 0, n, off);
      off += n;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return nowMs() - t0;
}

/** Same bytes at the start, middle and end of two images (1 MiB each). */
async function sameSamples(a: string, b: string, bytes: number): Promise<boolean> {
  const fa = await open(a, 'r');
  const fb = await open(b, 'r');
  try {
    for (const off of [0, Math.floor(bytes / 2 / MiB) * MiB, bytes - MiB]) {
      const x = Buffer.alloc(MiB);
      const y = Buffer.alloc(MiB);
      await fa.read(x, 0, MiB, off);
      await fb.read(y, 0, MiB, off);
      if (!x.equals(y)) return false;
    }
    return true;
  } finally {
    await fa.close();
    await fb.close();
  }
}

async function timed(poolDir: string, fn: () => Promise<Msg>): Promise<{ res: Msg; ms: number; free_used_bytes: number }> {
  await settleCaches();
  const free0 = freeBytes(poolDir);
  const t0 = nowMs();
  const res = await fn();
  const ms = nowMs() - t0;
  sh('sync', []);
  return { res, ms, free_used_bytes: free0 - freeBytes(poolDir) };
}

/** The daemon's handler time for a call and the cp runs it made (debug log), by the name it built. */
async function daemonSide(d: Daemon, method: string, key: string, value: string, buildName: string): Promise<Pick<Sample, 'handler_ms' | 'cp_ms' | 'cp_runs'>> {
  await d.log.waitForEntries((es) => es.some((e) => e.msg === 'rpc' && e.method === method && e[key] === value), 5000);
  const rpc = d.log.entries.find((e) => e.msg === 'rpc' && e.method === method && e[key] === value);
  const cps = d.log.entries.filter((e) => e.msg === 'exec' && typeof e.cmd === 'string' && /^cp /.test(e.cmd) && e.cmd.includes(`/.hpp/tmp/${buildName}/`));
  return { handler_ms: rpc?.ms ?? NaN, cp_ms: cps.reduce((a, e) => a + e.ms!, 0), cp_runs: cps.length };
}

async function measureSize(d: Daemon, log: Say, pool: PoolUnderTest, gib: number, reps: number, chunk: Buffer): Promise<SizeResult> {
  const c = d.clients;
  const imageBytes = gib * GiB;
  const capacity = String(capacityForDiskImage(imageBytes));
  const params = { storagePool: POOL_NAME, createDiskImage: 'true' };
  const volReq = (name: string, source?: Msg) => ({
    name,
    volume_capabilities: [MOUNT_CAP],
    capacity_range: { required_bytes: capacity, limit_bytes: '0' },
    parameters: params,
    ...(source ? { volume_content_source: source } : {}),
  });
  const srcName = `snap-${pool.key}-${gib}g-src`;
  const src = (await c.controller.CreateVolume(volReq(srcName), CALL_TIMEOUT_MS)).volume;
  const srcRec = readJson<VolumeRecord>(path.join(pool.dir, '.hpp/volumes', `${srcName}.json`));
  const srcImg = path.join(pool.dir, srcRec.data, 'disk.img');
  if (statSync(srcImg).size !== imageBytes) throw new Error(`${srcImg} is ${statSync(srcImg).size} bytes, expected ${imageBytes}`);
  const fillMs = await fillImage(srcImg, imageBytes, chunk);
  const srcAllocated = allocatedBytes(srcImg);
  // A reflink's cost follows the number of extents it shares, not the bytes.
  let extents = NaN;
  try {
    extents = Number(sh('filefrag', [srcImg]).match(/(\d+) extents? found/)?.[1] ?? NaN);
  } catch {
    // filefrag missing or the filesystem has no FIEMAP
  }
  if (srcAllocated < imageBytes) throw new Error(`filled ${srcImg} has only ${srcAllocated} bytes allocated`);
  log(`  ${pool.label} ${gib} GiB: source filled in ${(fillMs / 1000).toFixed(2)} s (${(imageBytes / 1e6 / (fillMs / 1000)).toFixed(0)} MB/s), ${fmtBytes(srcAllocated)} allocated in ${extents} extents`);

  const samples = perOp<Sample[]>(() => []);
  for (let r = 0; r < reps; r++) {
    const snapName = `${srcName}-s${r}`;
    const restoreName = `${srcName}-r${r}`;
    const cloneName = `${srcName}-c${r}`;

    const s = await timed(pool.dir, () => c.controller.CreateSnapshot({ source_volume_id: src.volume_id, name: snapName, parameters: {} }, CALL_TIMEOUT_MS));
    const snapRec = readJson<{ method: string }>(path.join(pool.dir, '.hpp/snapshot-records', `${snapName}.json`));
    samples.snapshot.push({ ms: s.ms, free_used_bytes: s.free_used_bytes, method: snapRec.method, ...(await daemonSide(d, 'CreateSnapshot', 'name', snapName, `@${snapName}`)) });
    const snapshotId = s.res.snapshot.snapshot_id as string;

    const rs = await timed(pool.dir, () => c.controller.CreateVolume(volReq(restoreName, { snapshot: { snapshot_id: snapshotId } }), CALL_TIMEOUT_MS));
    const rsRec = readJson<VolumeRecord>(path.join(pool.dir, '.hpp/volumes', `${restoreName}.json`));
    samples.restore.push({ ms: rs.ms, free_used_bytes: rs.free_used_bytes, method: rsRec.contentSource?.method ?? '?', ...(await daemonSide(d, 'CreateVolume', 'name', restoreName, restoreName)) });

    const cl = await timed(pool.dir, () => c.controller.CreateVolume(volReq(cloneName, { volume: { volume_id: src.volume_id } }), CALL_TIMEOUT_MS));
    const clRec = readJson<VolumeRecord>(path.join(pool.dir, '.hpp/volumes', `${cloneName}.json`));
    samples.clone.push({ ms: cl.ms, free_used_bytes: cl.free_used_bytes, method: clRec.contentSource?.method ?? '?', ...(await daemonSide(d, 'CreateVolume', 'name', cloneName, cloneName)) });

    // The copies must hold the source's bytes (checked outside the timed window).
    for (const [what, rec] of [['restore', rsRec], ['clone', clRec]] as const) {
      const img = path.join(pool.dir, rec.data, 'disk.img');
      if (statSync(img).size !== imageBytes || !(await sameSamples(srcImg, img, imageBytes))) throw new Error(`${what} ${img} does not hold the source's data`);
    }
    const line = OPS.map((op) => {
      const x = samples[op].at(-1)!;
      return `${op} ${x.ms.toFixed(1)} ms (${x.method}, ${fmtBytes(x.free_used_bytes)})`;
    }).join(', ');
    log(`    rep ${r + 1}/${reps}: ${line}`);

    await c.controller.DeleteVolume({ volume_id: cl.res.volume.volume_id }, CALL_TIMEOUT_MS);
    await c.controller.DeleteVolume({ volume_id: rs.res.volume.volume_id }, CALL_TIMEOUT_MS);
    await c.controller.DeleteSnapshot({ snapshot_id: snapshotId }, CALL_TIMEOUT_MS);
    if (!(await waitTrashEmpty(pool.dir))) throw new Error(`trash of ${pool.dir} not emptied`);
  }
  await c.controller.DeleteVolume({ volume_id: src.volume_id }, CALL_TIMEOUT_MS);
  if (!(await waitTrashEmpty(pool.dir))) throw new Error(`trash of ${pool.dir} not emptied`);

  const ops = perOp((op): OpFigures => {
    const xs = samples[op];
    const ms = median(xs.map((x) => x.ms));
    const method = [...new Set(xs.map((x) => x.method))].join(',');
    return {
      method,
      median_ms: ms,
      samples_ms: xs.map((x) => x.ms),
      handler_median_ms: median(xs.map((x) => x.handler_ms)),
      cp_median_ms: median(xs.map((x) => x.cp_ms)),
      free_used_bytes: median(xs.map((x) => x.free_used_bytes)),
      mb_per_s: method === 'copy' ? imageBytes / 1e6 / (ms / 1000) : null,
    };
  });
  return { pool: pool.label, pool_key: pool.key, gib, image_bytes: imageBytes, capacity_bytes: capacity, source_extents: extents, fill_ms: fillMs, fill_mb_per_s: imageBytes / 1e6 / (fillMs / 1000), reps, ops };
}

export async function run(bench: Bench, log: Say): Promise<BenchResult> {
  let sizes = parseSizes();
  const repsReflink = envInt('BENCH_SNAP_REPS_REFLINK', 5);
  const repsCopy = envInt('BENCH_SNAP_REPS_COPY', 1);
  const warnings: string[] = [];

  // Host space, phases one after the other: the XFS loop file receives every byte written into it
  // (all sizes: XFS need not reuse the same blocks); the ext4 phase holds source + snapshot + restore
  // + clone of the largest size at once.
  const hostFree = freeBytes(bench.dir);
  const need = (ss: number[]) => Math.max(ss.reduce((a, g) => a + g * GiB, 0), 4 * Math.max(...ss) * GiB * 1.06) + MARGIN;
  while (sizes.length > 0 && hostFree < need(sizes)) {
    const dropped = sizes.pop()!;
    const w = `WARNING: ${fmtBytes(hostFree)} free under ${bench.dir} is not enough for ${dropped} GiB images (needs ${fmtBytes(need([...sizes, dropped]))}); skipped`;
    log(`  ${w}`);
    warnings.push(w);
  }
  if (sizes.length === 0) throw new Error(`only ${fmtBytes(hostFree)} free under ${bench.dir}: not enough for any image size`);
  const maxCap = Number(capacityForDiskImage(Math.max(...sizes) * GiB));
  const chunk = randomFillSync(Buffer.alloc(CHUNK));
  const coreutils = sh('cp', ['--version']).split('\n')[0]!;
  const results: SizeResult[] = [];

  // (a) XFS on a loop device, made by the daemon from a blank device (mkfs.xfs -m reflink=1).
  {
    // Room for the source, a restore and a clone promised at once (capacity is reserved up front).
    const loop = makeLoopDevice(path.join(bench.dir, 'xfs.img'), 4 * maxCap + 2 * GiB);
    const dir = `${bench.dir}/pool-xfs`;
    try {
      const d = await bench.startDaemon({ pool: `${dir}:device=${loop.device}`, logLevel: 'debug' });
      try {
        const pool = { key: 'xfs', label: 'XFS on loop (reflink)', dir };
        for (const gib of sizes) results.push(await measureSize(d, log, pool, gib, repsReflink, chunk));
      } finally {
        await d.stop();
      }
    } finally {
      await releaseLoop(loop, dir);
    }
  }
  // (b) the host's temp directory.
  {
    const dir = bench.mkdir('pool-host');
    const fsType = sh('findmnt', ['-n', '-o', 'FSTYPE', '-T', dir]).trim();
    const d = await bench.startDaemon({ pool: dir, logLevel: 'debug' });
    try {
      const pool = { key: 'host', label: `host dir (${fsType}, copy)`, dir };
      for (const gib of sizes) results.push(await measureSize(d, log, pool, gib, repsCopy, chunk));
    } finally {
      await d.stop();
    }
  }

  // Figures.
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const rows: Table['rows'] = [];
  for (const r of results) {
    for (const op of OPS) {
      const o = r.ops[op];
      rows.push([`${r.gib} GiB`, r.pool, op, o.method, r.reps, o.median_ms, o.mb_per_s === null ? '' : o.mb_per_s.toFixed(0), fmtBytes(o.free_used_bytes), pct(o.free_used_bytes / r.image_bytes)]);
    }
  }
  const byKey = (key: string, gib: number) => results.find((r) => r.pool_key === key && r.gib === gib);
  const speedups: Array<{ gib: number; op: Op; reflink_ms: number; copy_ms: number; speedup: number; reflink_method: string; copy_method: string }> = [];
  for (const gib of sizes) {
    const x = byKey('xfs', gib);
    const h = byKey('host', gib);
    if (!x || !h) continue;
    for (const op of OPS) speedups.push({ gib, op, reflink_ms: x.ops[op].median_ms, copy_ms: h.ops[op].median_ms, speedup: h.ops[op].median_ms / x.ops[op].median_ms, reflink_method: x.ops[op].method, copy_method: h.ops[op].method });
  }
  // O(1) for reflink snapshots: time does not grow with size, and no data is duplicated.
  const xfs = results.filter((r) => r.pool_key === 'xfs');
  const o1 = perOp((op) => {
    const small = xfs[0];
    const large = xfs.at(-1);
    const timeRatio = small && large && large !== small ? large.ops[op].median_ms / small.ops[op].median_ms : null;
    const sizeRatio = small && large ? large.gib / small.gib : null;
    const maxSpace = Math.max(...xfs.map((r) => r.ops[op].free_used_bytes / r.image_bytes));
    const allReflink = xfs.every((r) => r.ops[op].method === 'reflink');
    return { time_ratio: timeRatio, size_ratio: sizeRatio, max_space_share: maxSpace, all_reflink: allReflink, met: allReflink && maxSpace <= O1_SPACE_SHARE && (timeRatio === null || timeRatio <= O1_TIME_RATIO) };
  });
  const goalMet = o1.snapshot.met;

  const tables: Table[] = [
    {
      title: `Snapshot / restore / clone of a filled disk.img (client-side ms, median of reps; page cache dropped before each)`,
      columns: ['size', 'pool', 'operation', 'method', 'reps', 'ms', 'MB/s', 'free space used', 'of size'],
      rows,
    },
  ];
  if (speedups.length) {
    tables.push({
      title: 'Reflink speed-up over copy (copy ms / reflink ms)',
      columns: ['size', 'operation', 'reflink ms', 'copy ms', 'speed-up'],
      rows: speedups.map((s) => [`${s.gib} GiB`, s.op, s.reflink_ms, s.copy_ms, `${s.speedup.toFixed(0)}x`]),
    });
  }
  tables.push({
    title: 'Where the time goes (medians, ms): handler = daemon log; cp = the cp tool (copy pools); rest = fsync of the new files, records, renames',
    columns: ['size', 'pool', 'operation', 'client', 'handler', 'cp', 'rest of handler'],
    rows: results.flatMap((r) => OPS.map((op) => [`${r.gib} GiB`, r.pool, op, r.ops[op].median_ms, r.ops[op].handler_median_ms, r.ops[op].cp_median_ms, r.ops[op].handler_median_ms - r.ops[op].cp_median_ms])),
  });
  tables.push({
    title: `Reflink O(1) check (XFS): time ratio largest/smallest image (goal <= ${O1_TIME_RATIO} for a size ratio of ${o1.snapshot.size_ratio ?? '-'}), free space used <= ${pct(O1_SPACE_SHARE)} of the image`,
    columns: ['operation', 'method', 'time ratio', 'max space used', 'O(1)'],
    rows: OPS.map((op) => [op, o1[op].all_reflink ? 'reflink' : 'NOT reflink', o1[op].time_ratio ?? '', pct(o1[op].max_space_share), o1[op].met ? 'yes' : 'no']),
  });
  tables.push({
    title: 'Source images: fill speed of each pool, and extents (filefrag) a reflink has to share',
    columns: ['size', 'pool', 'fill s', 'MB/s', 'extents'],
    rows: results.map((r) => [`${r.gib} GiB`, r.pool, r.fill_ms / 1000, r.fill_mb_per_s, Number.isFinite(r.source_extents) ? r.source_extents : '?']),
  });

  const summary = [
    ...warnings,
    ...speedups.filter((s) => s.op === 'snapshot').map((s) => `${s.gib} GiB snapshot: reflink ${s.reflink_ms.toFixed(1)} ms vs copy ${(s.copy_ms / 1000).toFixed(2)} s = ${s.speedup.toFixed(0)}x`),
    `reflink snapshot O(1) (time x${o1.snapshot.time_ratio?.toFixed(2) ?? '-'} for size x${o1.snapshot.size_ratio ?? '-'}, space ${pct(o1.snapshot.max_space_share)}): ${goalMet ? 'met' : 'NOT met'}; restore ${o1.restore.met ? 'O(1)' : 'not O(1)'}, clone ${o1.clone.met ? 'O(1)' : 'not O(1)'}`,
    `XFS source images: ${xfs.map((r) => `${r.gib} GiB in ${r.source_extents} extents`).join(', ')} (a reflink shares extents, so its time follows their number)`,
    ...results.filter((r) => r.pool_key === 'host').map((r) => `copy (${r.gib} GiB): snapshot ${r.ops.snapshot.mb_per_s?.toFixed(0)} MB/s, restore ${r.ops.restore.mb_per_s?.toFixed(0)} MB/s, clone ${r.ops.clone.mb_per_s?.toFixed(0)} MB/s (fill ${r.fill_mb_per_s.toFixed(0)} MB/s)`),
  ];

  const colorOf = (r: SizeResult) => (r.pool_key === 'xfs' ? COLORS.green : COLORS.orange);
  const chart = {
    title: `${title} (${sizes.join(', ')} GiB)`,
    panels: [
      {
        title: 'Reflink (XFS on loop): client ms; bar = median, circles = reps',
        unit: 'ms',
        bars: xfs.flatMap((r) => OPS.map((op) => ({ label: `${r.gib} GiB ${op}`, value: r.ops[op].median_ms, color: colorOf(r), points: r.ops[op].samples_ms, text: `${r.ops[op].median_ms.toFixed(1)} ms, ${fmtBytes(r.ops[op].free_used_bytes)} used` }))),
      },
      {
        title: 'Copy (host dir): client s',
        unit: 's',
        bars: results.filter((r) => r.pool_key === 'host').flatMap((r) => OPS.map((op) => ({ label: `${r.gib} GiB ${op}`, value: r.ops[op].median_ms / 1000, color: colorOf(r), text: `${(r.ops[op].median_ms / 1000).toFixed(2)} s, ${r.ops[op].mb_per_s?.toFixed(0) ?? '-'} MB/s, ${fmtBytes(r.ops[op].free_used_bytes)} used` }))),
      },
    ],
    notes: [
      ...speedups.map((s) => `${s.gib} GiB ${s.op}: reflink ${s.reflink_ms.toFixed(1)} ms vs copy ${s.copy_ms.toFixed(0)} ms (${s.speedup.toFixed(0)}x)`),
      `Reflink snapshot O(1): ${goalMet ? 'met' : 'NOT met'}. Source images filled with random data (64 MiB chunk + counter), fsynced; page cache dropped before each operation. ${coreutils}.`,
    ],
  };

  return {
    summary,
    tables,
    chart,
    config: { sizes_gib: sizes, reps_reflink: repsReflink, reps_copy: repsCopy, fill_chunk_bytes: CHUNK, drop_caches: process.env.BENCH_DROP_CACHES !== '0', coreutils, daemon_log_level: 'debug' },
    figures: { results, speedups, o1 },
    goal: { text: `reflink snapshot O(1): time of the largest / smallest image <= ${O1_TIME_RATIO}, free space used <= ${pct(O1_SPACE_SHARE)} of the image`, met: goalMet, value: o1.snapshot },
    headlines: [
      {
        metric: 'snapshot reflink O(1)',
        value: `time x${o1.snapshot.time_ratio?.toFixed(2) ?? '-'} for size x${o1.snapshot.size_ratio ?? '-'}, space ${pct(o1.snapshot.max_space_share)}`,
        goal: `time ratio <= ${O1_TIME_RATIO}, space <= ${pct(O1_SPACE_SHARE)}, method reflink`,
        met: goalMet,
      },
      ...speedups
        .filter((s) => s.gib === Math.max(...sizes))
        .map((s) => ({ metric: `${s.gib} GiB ${s.op}: reflink vs copy`, value: `${s.reflink_ms.toFixed(1)} ms vs ${(s.copy_ms / 1000).toFixed(2)} s`, detail: `${s.speedup.toFixed(0)}x` })),
    ],
  };
}
