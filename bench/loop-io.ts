// Sequential throughput through a block volume's loop device vs the raw backing file, both with direct
// I/O (dd oflag=direct / iflag=direct, 1 MiB blocks). The block volume is created and published (block
// access type) through the daemon; the raw file sits in the same pool directory. Both files are
// preallocated with `fallocate -l` and written once before measuring, so every measured write lands on
// allocated, already-written blocks (a first write into fallocated space converts unwritten extents,
// which is reported separately as "first write").
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BLOCK_CAP, MiB, POOL_NAME, envInt } from './lib/common.js';
import { loopDevices } from './lib/leaks.js';
import type { BenchResult, Say } from './lib/result.js';
import type { Bench } from './lib/scratch.js';
import { median } from './lib/stats.js';
import { COLORS } from './lib/svg.js';
import type { Table } from './lib/table.js';
import { runTool, sh } from './lib/tools.js';

export const title = 'Block volume I/O: loop device vs raw file';

const GOAL_RATIO = 0.9;

/** dd prints e.g. "1073741824 bytes (1.1 GB, 1.0 GiB) copied, 1.2345 s, 870 MB/s" on stderr (LC_ALL=C). */
function parseDd(stderr: string): { bytes: number; seconds: number } {
  const m = stderr.match(/^(\d+) bytes .*copied, ([\d.]+(?:e[-+]?\d+)?) s/m);
  if (!m) throw new Error(`cannot read dd's summary from:\n${stderr}`);
  return { bytes: Number(m[1]), seconds: Number(m[2]) };
}

interface DdRun {
  bytes: number;
  seconds: number;
  wallSeconds: number;
  mbps: number;
}

type Subject = 'raw' | 'loop';
type Op = 'write' | 'read';
const SUBJECTS: Subject[] = ['raw', 'loop'];
const OPS: Op[] = ['write', 'read'];

async function dd(args: string[]): Promise<DdRun> {
  const r = await runTool('dd', args);
  if (r.code !== 0) throw new Error(`dd ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  const { bytes, seconds } = parseDd(r.stderr);
  return { bytes, seconds, wallSeconds: r.ms / 1000, mbps: bytes / 1e6 / seconds };
}

export async function run(bench: Bench, log: Say): Promise<BenchResult> {
  const sizeMiB = envInt('BENCH_LOOP_MIB', 1024);
  // 9 pairs: with 3 the host's disk noise moved the write ratio by several points between runs.
  const reps = envInt('BENCH_LOOP_REPS', 9);
  const dropCaches = process.env.BENCH_DROP_CACHES !== '0';
  const size = sizeMiB * MiB;
  const pool = bench.mkdir('pool');
  const pods = bench.mkdir('pods/loop-io/volumeDevices');
  const d = await bench.startDaemon({ pool, logLevel: 'info' });
  const c = d.clients;

  const created = await c.controller.CreateVolume({
    name: 'bench-loop-io',
    volume_capabilities: [BLOCK_CAP],
    capacity_range: { required_bytes: String(size), limit_bytes: '0' },
    parameters: { storagePool: POOL_NAME },
  });
  const id = created.volume.volume_id as string;
  if (created.volume.capacity_bytes !== String(size)) throw new Error(`asked for ${size} bytes, got ${created.volume.capacity_bytes}`);
  const target = path.join(pods, 'bench-loop-io');
  await c.node.NodePublishVolume({ volume_id: id, target_path: target, volume_capability: BLOCK_CAP, readonly: false });
  if (!statSync(target).isBlockDevice()) throw new Error(`${target} is not a block device after NodePublishVolume`);

  const image = path.join(pool, '.hpp/block/bench-loop-io.img');
  const loops = loopDevices().filter((l) => l.backFile === image);
  if (loops.length !== 1) throw new Error(`expected one loop device backed by ${image}, found ${loops.length}`);
  const loop = loops[0]!;
  // The question as an operator would ask it.
  const dioJson = JSON.parse(sh('losetup', ['--list', '--json', '-O', 'NAME,DIO', loop.name])) as { loopdevices?: Array<{ dio?: unknown }> };
  const dioOn = [true, 1, '1'].includes(dioJson.loopdevices?.[0]?.dio as boolean | number | string);
  const queue = (dev: string, f: string) => {
    try {
      return readFileSync(`/sys/block/${path.basename(dev)}/queue/${f}`, 'utf8').trim();
    } catch {
      return 'unknown';
    }
  };
  const loopQueue = { max_sectors_kb: Number(queue(loop.name, 'max_sectors_kb')), scheduler: queue(loop.name, 'scheduler').match(/\[(.+)\]/)?.[1] ?? 'unknown' };
  log(`  volume ${id} published at ${target} -> ${loop.name} (direct I/O ${dioOn ? 'on' : 'off'}, logical sector ${loop.logSec} B)`);

  // The raw file, next to the image in the same pool directory, same size; both preallocated.
  const raw = path.join(pool, 'raw-bench.img');
  writeFileSync(raw, '');
  sh('fallocate', ['-l', String(size), raw]);
  sh('fallocate', ['-l', String(size), image]);
  const allocated = (f: string) => statSync(f).blocks * 512;
  const alloc = { raw_bytes: allocated(raw), image_bytes: allocated(image) };
  if (alloc.raw_bytes < size || alloc.image_bytes < size) throw new Error(`preallocation fell short: ${JSON.stringify(alloc)}`);

  const subjects: Record<Subject, string> = { raw, loop: target };
  const count = String(sizeMiB);
  // notrunc: without it dd truncates the regular file and throws the preallocation away.
  const write = (f: string) => dd(['if=/dev/zero', `of=${f}`, 'bs=1M', `count=${count}`, 'oflag=direct', 'conv=notrunc,fsync']);
  const read = (f: string) => dd([`if=${f}`, 'of=/dev/null', 'bs=1M', `count=${count}`, 'iflag=direct']);
  const settle = async () => {
    await runTool('sync', []);
    if (dropCaches) writeFileSync('/proc/sys/vm/drop_caches', '3');
  };

  // First write into fallocated (unwritten) extents: not the measurement, but worth knowing.
  const first = {} as Record<Subject, DdRun>;
  for (const k of SUBJECTS) {
    await settle();
    first[k] = await write(subjects[k]);
    log(`  first write ${k.padEnd(4)} ${first[k].mbps.toFixed(0)} MB/s (allocating pass, not counted)`);
  }
  // Measured: interleaved so that drift of the host disk hits both sides alike.
  const samples: Record<Subject, Record<Op, number[]>> = { raw: { write: [], read: [] }, loop: { write: [], read: [] } };
  for (let r = 0; r < reps; r++) {
    for (const op of OPS) {
      for (const k of SUBJECTS) {
        const f = subjects[k];
        await settle();
        const res = op === 'write' ? await write(f) : await read(f);
        samples[k][op].push(res.mbps);
        log(`  rep ${r + 1}/${reps} ${op.padEnd(5)} ${k.padEnd(4)} ${res.mbps.toFixed(0)} MB/s`);
      }
    }
  }

  await c.node.NodeUnpublishVolume({ volume_id: id, target_path: target });
  const stillAttached = loopDevices().filter((l) => l.backFile === image).map((l) => l.name);
  if (stillAttached.length > 0) throw new Error(`NodeUnpublishVolume left ${stillAttached.join(', ')} attached to ${image}`);
  await c.controller.DeleteVolume({ volume_id: id });

  const m: Record<Subject, Record<Op, number>> = {
    raw: { write: median(samples.raw.write), read: median(samples.raw.read) },
    loop: { write: median(samples.loop.write), read: median(samples.loop.read) },
  };
  const ratio: Record<Op, number> = { write: m.loop.write / m.raw.write, read: m.loop.read / m.raw.read };
  // Each loop run right after its raw partner: the ratio within a pair is less exposed to drift.
  const pairRatio: Record<Op, number> = {
    write: median(samples.loop.write.map((x, i) => x / samples.raw.write[i]!)),
    read: median(samples.loop.read.map((x, i) => x / samples.raw.read[i]!)),
  };
  const goalMet = ratio.write >= GOAL_RATIO && ratio.read >= GOAL_RATIO;
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

  const tables: Table[] = [
    {
      title: `Sequential ${sizeMiB} MiB, bs=1M, O_DIRECT, median of ${reps} (MB/s = 10^6 B/s)`,
      columns: ['op', 'raw file', 'loop device', 'loop/raw', 'pairwise', 'raw samples', 'loop samples'],
      rows: OPS.map((op) => [
        op,
        m.raw[op],
        m.loop[op],
        pct(ratio[op]),
        pct(pairRatio[op]),
        samples.raw[op].map((x) => x.toFixed(0)).join(' '),
        samples.loop[op].map((x) => x.toFixed(0)).join(' '),
      ]),
    },
    {
      title: 'Loop device',
      columns: ['fact', 'value'],
      rows: [
        ['device', loop.name],
        ['direct I/O (losetup DIO)', dioOn ? 'on' : 'off'],
        ['logical sector size', `${loop.logSec} B`],
        ['queue max_sectors_kb / scheduler', `${loopQueue.max_sectors_kb} / ${loopQueue.scheduler}`],
        ['first write into fallocated space, raw', `${first.raw.mbps.toFixed(0)} MB/s`],
        ['first write into fallocated space, loop', `${first.loop.mbps.toFixed(0)} MB/s`],
        ['page cache dropped before each run', dropCaches ? 'yes' : 'no'],
      ],
    },
  ];
  const summary = [
    `write: loop ${m.loop.write.toFixed(0)} MB/s vs raw ${m.raw.write.toFixed(0)} MB/s = ${pct(ratio.write)} (pairwise median ${pct(pairRatio.write)}); read: loop ${m.loop.read.toFixed(0)} vs raw ${m.raw.read.toFixed(0)} MB/s = ${pct(ratio.read)} (pairwise ${pct(pairRatio.read)})`,
    `goal loop >= ${pct(GOAL_RATIO)} of raw: ${goalMet ? 'met' : 'NOT met'}; loop direct I/O ${dioOn ? 'on' : 'off'}`,
  ];
  const panel = (op: Op, label: string) => ({
    title: `${label} (MB/s): bar = median, circles = the ${reps} runs`,
    unit: 'MB/s',
    goal: { value: GOAL_RATIO * m.raw[op], label: `goal: ${pct(GOAL_RATIO)} of raw` },
    bars: [
      { label: 'raw file', value: m.raw[op], color: COLORS.blue, points: samples.raw[op] },
      { label: `loop device (${pct(ratio[op])})`, value: m.loop[op], color: ratio[op] >= GOAL_RATIO ? COLORS.green : COLORS.orange, points: samples.loop[op] },
    ],
  });
  const chart = {
    title: `${title} (${sizeMiB} MiB, dd bs=1M, O_DIRECT)`,
    panels: [panel('write', 'Sequential write, oflag=direct conv=fsync'), panel('read', 'Sequential read, iflag=direct')],
    notes: [
      `Loop device ${loop.name}: direct I/O ${dioOn ? 'on' : 'off'}, logical sector ${loop.logSec} B. Both files fallocated and written once before measuring.`,
      `First write into fallocated space (not counted): raw ${first.raw.mbps.toFixed(0)} MB/s, loop ${first.loop.mbps.toFixed(0)} MB/s.`,
    ],
  };
  return {
    summary,
    tables,
    chart,
    config: { size_mib: sizeMiB, repetitions: reps, block_size: '1M', drop_caches: dropCaches, dd_write: 'if=/dev/zero bs=1M oflag=direct conv=notrunc,fsync', dd_read: 'of=/dev/null bs=1M iflag=direct' },
    figures: {
      median_mbps: m,
      ratio,
      pairwise_ratio_median: pairRatio,
      samples_mbps: samples,
      first_write_mbps: { raw: first.raw.mbps, loop: first.loop.mbps },
      loop_device: { name: loop.name, direct_io: dioOn, logical_sector_bytes: loop.logSec, ...loopQueue },
      allocated_before: alloc,
    },
    goal: { text: `loop >= ${GOAL_RATIO * 100}% of raw for write and read`, met: goalMet, value: ratio },
  };
}
