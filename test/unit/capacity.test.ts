import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CapacityTracker, reportedCapacityBytes } from '../../src/pools/capacity.js';
import type { Pool } from '../../src/pools/pool.js';
import type { VolumeRecord } from '../../src/format/records.js';

const MiB = 1024n * 1024n;
const dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-capacity-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pool(freeBytes: bigint, ratio = 1): Pool {
  return {
    overcommitRatio: ratio,
    quota: undefined,
    resolveInside: (rel: string) => path.join(dir, rel),
    capacity: async () => ({ totalBytes: 1024n * MiB, availableBytes: freeBytes, usedBytes: 0n }),
  } as unknown as Pool;
}

function volume(name: string, capacity: bigint, writtenMiB: number): VolumeRecord {
  mkdirSync(path.join(dir, name), { recursive: true });
  if (writtenMiB > 0) writeFileSync(path.join(dir, name, 'data'), Buffer.alloc(writtenMiB * 1024 * 1024, 1));
  return { id: `n:p:${name}`, name, pool: 'p', mode: 'filesystem', data: name, capacityBytes: capacity.toString() } as VolumeRecord;
}

describe('CapacityTracker', () => {
  it('reserves what volumes may still grow into, and gives back exactly that on delete', async () => {
    const vols = [volume('a', 100n * MiB, 10), volume('b', 50n * MiB, 0)];
    const t = new CapacityTracker(pool(500n * MiB), () => vols);
    const f = await t.figures();
    // a: 100 − 10 (plus a few KiB of directory blocks), b: 50.
    expect(f.reservedBytes).toBeGreaterThan(139n * MiB);
    expect(f.reservedBytes).toBeLessThanOrEqual(140n * MiB);
    expect(f.availableBytes).toBe(500n * MiB - f.reservedBytes);

    const commit = t.reserve('n:p:c', 30n * MiB);
    expect((await t.figures()).reservedBytes).toBe(f.reservedBytes + 30n * MiB);
    commit(true);
    expect((await t.figures()).reservedBytes).toBe(f.reservedBytes + 30n * MiB);
    const dropped = t.reserve('n:p:d', 20n * MiB);
    dropped(false);
    dropped(true);
    expect((await t.figures()).reservedBytes).toBe(f.reservedBytes + 30n * MiB);

    // Deleting b gives back its 50 MiB reserve; deleting a gives back its ~90, not its 100 capacity
    // (its 10 MiB of data stay taken until they are really gone, and free space will show that).
    t.forget('n:p:b');
    t.forget('n:p:a');
    expect((await t.figures()).reservedBytes).toBe(30n * MiB);
  });

  it('divides the reserve by the over-commit ratio and never goes below zero', async () => {
    const vols = [volume('e', 400n * MiB, 0)];
    // 300 − 400/2, give or take the directory's own 4 KiB block counted as used.
    const halved = (await new CapacityTracker(pool(300n * MiB, 2), () => vols).figures()).availableBytes;
    expect(halved).toBeGreaterThanOrEqual(100n * MiB);
    expect(halved).toBeLessThan(100n * MiB + 8192n);
    expect((await new CapacityTracker(pool(300n * MiB, 1), () => vols).figures()).availableBytes).toBe(0n);
  });
});

describe('reportedCapacityBytes (what GetCapacity tells the scheduler)', () => {
  const GiB = 1024n * MiB;

  it('rounds down to a power-of-two step of at most 1/1024 of the pool', () => {
    expect(reportedCapacityBytes(16n * GiB - 1n, 16n * GiB)).toBe(16n * GiB - 16n * MiB);
    expect(reportedCapacityBytes(10n * GiB + 15n * MiB, 16n * GiB)).toBe(10n * GiB);
    expect(reportedCapacityBytes(700n * MiB + 12345n, 1n * GiB)).toBe(700n * MiB);
    // 1.5 GiB: 1/1024 is 1.5 MiB, so the step is 1 MiB.
    expect(reportedCapacityBytes(1000n * MiB + 5n, 1536n * MiB)).toBe(1000n * MiB);
  });

  it('never reports more than the exact figure, and never less than it by a whole step', () => {
    for (const total of [1n, 4096n, 100n * MiB, 16n * GiB, 3n * 1024n * GiB + 7n]) {
      let step = 1n;
      while (step * 2n <= total / 1024n) step *= 2n;
      expect(step * 1024n <= total || step === 1n).toBe(true);
      for (const available of [1n, total / 3n, total - 1n, total]) {
        const r = reportedCapacityBytes(available, total);
        expect(r <= available).toBe(true);
        expect(available - r < step).toBe(true);
      }
    }
  });

  it('keeps the figure steady while small volumes come and go', () => {
    const total = 16n * GiB;
    const seen = new Set<bigint>();
    for (let used = 0n; used < 15n * MiB; used += MiB) seen.add(reportedCapacityBytes(8n * GiB - used, total));
    expect(seen.size).toBeLessThanOrEqual(2);
  });

  it('reports 0 for nothing or less', () => {
    expect(reportedCapacityBytes(0n, 16n * GiB)).toBe(0n);
    expect(reportedCapacityBytes(-5n, 16n * GiB)).toBe(0n);
    expect(reportedCapacityBytes(5n, 0n)).toBe(5n);
  });
});
