import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { statusOf } from '../../src/csi/status.js';
import { capacityForDiskImage, diskImageSize, minDiskImageCapacity, parseOverhead } from '../../src/volumes/disk-image.js';

const MiB = 1024n * 1024n;
const o = (text: string) => parseOverhead(text, 'test');

function thrown(fn: () => unknown): { code: number; message: string } {
  try {
    fn();
  } catch (err) {
    return { code: statusOf(err), message: (err as Error).message };
  }
  throw new Error('expected a throw');
}

describe('the smallest volume whose disk.img holds 1 MiB', () => {
  it('is 1 MiB without overhead and 1109604 bytes at CDI’s 0.055', () => {
    expect(minDiskImageCapacity(o('0'))).toBe(MiB);
    expect(minDiskImageCapacity(o('0.055'))).toBe(1109604n);
  });

  it('is exact for any overhead: one byte less gives an empty disk.img', () => {
    for (const text of ['0', '0.001', '0.055', '0.1', '0.333333333', '0.5', '0.9', '0.999', '0.999999999']) {
      const min = minDiskImageCapacity(o(text));
      expect(diskImageSize(min, o(text)), text).toBe(MiB);
      expect(diskImageSize(min - 1n, o(text)), text).toBe(0n);
    }
  });
});

describe('capacityForDiskImage', () => {
  it('keeps a capacity whose disk.img holds 1 MiB', () => {
    expect(capacityForDiskImage(64n * MiB, 0n, o('0.055'))).toBe(64n * MiB);
    expect(capacityForDiskImage(1109604n, 1109604n, o('0.055'))).toBe(1109604n);
  });

  it('rounds a smaller capacity up to the smallest that works, when limit_bytes allows or is unset', () => {
    expect(capacityForDiskImage(MiB, 0n, o('0.055'))).toBe(1109604n);
    expect(capacityForDiskImage(1n, 2n * MiB, o('0.055'))).toBe(1109604n);
    expect(capacityForDiskImage(MiB, 1109604n, o('0.055'))).toBe(1109604n);
  });

  it('answers OUT_OF_RANGE naming the numbers when limit_bytes forbids rounding up', () => {
    const err = thrown(() => capacityForDiskImage(MiB, MiB, o('0.055')));
    expect(err.code).toBe(status.OUT_OF_RANGE);
    expect(err.message).toContain('1109604');
    expect(err.message).toContain('limit_bytes 1048576');
    expect(err.message).toContain('0.055');
    const near1 = thrown(() => capacityForDiskImage(64n * MiB, 64n * MiB, o('0.999999999')));
    expect(near1.code).toBe(status.OUT_OF_RANGE);
    expect(near1.message).toContain(String(minDiskImageCapacity(o('0.999999999'))));
  });
});
