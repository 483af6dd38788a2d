/**
 * Preallocation progress: the log lines (percent, rate, the volume and whatever the call's log binds)
 * at a modest rate, the tracker behind hpp_preallocation_remaining_bytes, and the manager feeding it
 * for a volume whose preallocation is under way.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openCall } from '../../src/observe/call-context.js';
import type { VolumeSource } from '../../src/observe/health.js';
import { silentLogger, type Logger } from '../../src/observe/logger.js';
import { DriverMetrics } from '../../src/observe/metrics.js';
import { PROGRESS_CADENCE, ProgressReporter, preallocate } from '../../src/system/preallocate.js';
import { PreallocationTracker } from '../../src/volumes/preallocations.js';
import { createRequest, HandlerHarness, MiB } from '../helpers/handler-harness.js';

type Line = Record<string, unknown>;

function capture(bindings: Record<string, unknown> = {}): { log: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) }).child(bindings) as unknown as Logger;
  return { log, lines };
}

async function waitFor(cond: () => boolean, ms = 5_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

const scratch = mkdtempSync(path.join(os.tmpdir(), 'hpp-prealloc-progress-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('ProgressReporter', () => {
  it('logs every 5 s, or every 10 % but at most once a second, with percent, rate and time left', () => {
    let now = 1_000_000;
    const { log, lines } = capture({ requestId: 'r1', volume: 'vm1' });
    const GiB = 1024n ** 3n;
    const r = new ProgressReporter(10n * GiB, log, { file: '/p/.hpp/tmp/vm1/disk.img' }, () => now);
    expect(PROGRESS_CADENCE).toEqual({ everyMs: 5_000, everyFraction: 0.1, minMs: 1_000 });
    // 5 % after 0.5 s, then 12 % after 0.9 s: under a second since the start, nothing yet.
    now += 500;
    r.update(GiB / 2n);
    now += 400;
    r.update((12n * GiB) / 10n);
    expect(lines).toHaveLength(0);
    // 1.2 s, 15 %: a line.
    now += 300;
    r.update((15n * GiB) / 10n);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: 'preallocating', requestId: 'r1', volume: 'vm1', file: '/p/.hpp/tmp/vm1/disk.img', total: String(10n * GiB), percent: 15, seconds: 1.2 });
    expect(lines[0]!.mibPerSecond).toBeCloseTo(1280, 0);
    expect(lines[0]!.secondsLeft).toBe(7);
    // Slow now: 3 % more in 4.9 s is no line; at 5 s there is one.
    now += 4_900;
    r.update((18n * GiB) / 10n);
    expect(lines).toHaveLength(1);
    now += 100;
    r.update((18n * GiB) / 10n);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ percent: 17.9, seconds: 6.2 }); // 1.8 GiB floored to a byte, and percent floored: never 100 before the end
    // Done: no progress line for 100 %, the final line instead.
    now += 1_000;
    r.update(10n * GiB);
    r.finish('full');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ msg: 'preallocated', method: 'full', bytes: String(10n * GiB), seconds: 7.2, volume: 'vm1', requestId: 'r1' });
  });
});

describe('preallocate()', () => {
  it('fallocate where supported: progress 0 then all, one "preallocated" line in the call log', async () => {
    const file = path.join(scratch, 'fa.img');
    writeFileSync(file, '');
    const { log, lines } = capture({ requestId: 'r2', volume: 'v' });
    const seen: Array<[bigint, bigint]> = [];
    const method = await preallocate(file, 0n, 4n * MiB, { log, execLog: silentLogger(), onProgress: (d, t) => seen.push([d, t]) });
    expect(method).toBe('fallocate');
    expect(seen).toEqual([
      [0n, 4n * MiB],
      [4n * MiB, 4n * MiB],
    ]);
    expect(lines.filter((l) => l.msg === 'preallocated')).toEqual([expect.objectContaining({ method: 'fallocate', bytes: String(4n * MiB), volume: 'v', requestId: 'r2' })]);
  });

  it('zeros where fallocate is not supported: a progress line per step of the cadence, progress after each chunk', async () => {
    // A fallocate that answers as on ext2, first on PATH.
    const bin = path.join(scratch, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(path.join(bin, 'fallocate'), '#!/bin/sh\necho "fallocate: fallocate failed: Operation not supported" >&2\nexit 1\n');
    chmodSync(path.join(bin, 'fallocate'), 0o755);
    const saved = process.env.PATH;
    process.env.PATH = `${bin}:${saved}`;
    try {
      const file = path.join(scratch, 'zeros.img');
      writeFileSync(file, '');
      const { log, lines } = capture({ requestId: 'r3', volume: 'blk' });
      const seen: bigint[] = [];
      const method = await preallocate(file, 0n, 40n * MiB, { log, execLog: silentLogger(), onProgress: (d) => seen.push(d), cadence: { everyMs: 0, everyFraction: 0, minMs: 0 } });
      expect(method).toBe('full');
      expect(statSync(file).blocks * 512).toBeGreaterThanOrEqual(40 * 1024 * 1024);
      expect(seen).toEqual([0n, 8n * MiB, 16n * MiB, 24n * MiB, 32n * MiB, 40n * MiB]);
      const progress = lines.filter((l) => l.msg === 'preallocating');
      expect(progress.map((l) => l.percent)).toEqual([20, 40, 60, 80]);
      for (const l of progress) expect(l).toMatchObject({ volume: 'blk', requestId: 'r3', file, total: String(40n * MiB) });
      expect(lines.map((l) => l.msg)).toEqual(['fallocate not supported here: writing zeros', 'preallocating', 'preallocating', 'preallocating', 'preallocating', 'preallocated']);
      expect(lines.at(-1)).toMatchObject({ method: 'full', bytes: String(40n * MiB) });
    } finally {
      process.env.PATH = saved;
    }
  });
});

describe('hpp_preallocation_remaining_bytes', () => {
  const source = { list: () => [], poolList: () => [], capacityOf: () => Promise.reject(new Error('none')), poolState: () => Promise.resolve({ phase: 'ready' }) } as unknown as VolumeSource;

  it('has a series per volume under way, with what is left, and none once it ends', async () => {
    const tracker = new PreallocationTracker();
    const m = new DriverMetrics(source, silentLogger(), { version: '1', defaultMetrics: false, preallocations: () => tracker.list() });
    const a = tracker.open('fast', 'vm1');
    const b = tracker.open('fast', 'vm2');
    expect(await m.render()).not.toMatch(/^hpp_preallocation_remaining_bytes\{/m);
    a.progress(0n, 100n * MiB);
    b.progress(30n * MiB, 40n * MiB);
    let text = await m.render();
    expect(text).toContain(`hpp_preallocation_remaining_bytes{pool="fast",volume="vm1"} ${100 * 1024 * 1024}`);
    expect(text).toContain(`hpp_preallocation_remaining_bytes{pool="fast",volume="vm2"} ${10 * 1024 * 1024}`);
    a.progress(60n * MiB, 100n * MiB);
    b.end();
    text = await m.render();
    expect(text).toContain(`hpp_preallocation_remaining_bytes{pool="fast",volume="vm1"} ${40 * 1024 * 1024}`);
    expect(text).not.toContain('volume="vm2"');
    a.end();
    expect(await m.render()).not.toMatch(/^hpp_preallocation_remaining_bytes\{/m);
    expect(tracker.list()).toEqual([]);
  });

  it('is exported even without a tracker (for the monitoring rules), with no series', async () => {
    const text = await new DriverMetrics(source, silentLogger(), { version: '1', defaultMetrics: false }).render();
    expect(text).toContain('# TYPE hpp_preallocation_remaining_bytes gauge');
  });
});

describe('the volume manager follows its preallocations', () => {
  let harness: HandlerHarness | undefined;
  afterEach(async () => {
    await harness?.dispose();
    harness = undefined;
  });

  it('a CreateVolume whose preallocation is under way is listed with its pool, volume and bytes left, until it stops', async () => {
    harness = await new HandlerHarness().start();
    harness.host.preallocateHangs = true;
    const { log } = capture();
    const scope = openCall(log);
    const answer = harness.ctl('CreateVolume', createRequest({ name: 'slow', kind: 'block', required: 4n * MiB, parameters: { preallocation: 'true' } }), scope.cx);
    expect(await waitFor(() => harness!.volumes.preallocations.list().length > 0)).toBe(true);
    expect(harness.volumes.preallocations.list()).toEqual([{ pool: 'default', volume: 'slow', totalBytes: 4n * MiB, remainingBytes: 4n * MiB }]);
    scope.cancel('test');
    expect((await answer).code).toBe('CANCELLED');
    expect(harness.volumes.preallocations.list()).toEqual([]);
  });

  it('preallocation runs with the log of the call, bound to the volume, and is no longer listed once done', async () => {
    harness = await new HandlerHarness().start();
    const data = harness.host.data;
    const original = data.preallocate.bind(data);
    const bindings: Array<Record<string, unknown>> = [];
    data.preallocate = (file, offset, length, tc) => {
      bindings.push(tc.log.bindings());
      return original(file, offset, length, tc);
    };
    const { log } = capture();
    const cx = openCall(log).cx;
    const r = await harness.ctl('CreateVolume', createRequest({ name: 'quick', kind: 'block', required: 4n * MiB, parameters: { preallocation: 'true' } }), cx);
    expect(r.code).toBeUndefined();
    expect(bindings).toEqual([{ requestId: cx.requestId, volume: 'quick' }]);
    expect(harness.volumes.preallocations.list()).toEqual([]);
    expect(harness.host.preallocated).toHaveLength(1);
  });
});
