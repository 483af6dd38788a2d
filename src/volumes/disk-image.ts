import { promises as fsp } from 'node:fs';
import { invalidInput, outOfRange } from '../errors.js';
import { diskImagePath } from '../format/layout.js';
import type { Host } from '../system/host.js';
import type { PreallocateContext, PreallocationMethod } from '../system/preallocate.js';

/** CDI's default share of a Filesystem PVC kept back for the filesystem itself. */
export const DEFAULT_FILESYSTEM_OVERHEAD = '0.055';
/** KubeVirt's qemu user and group. */
export const QEMU_UID = 107;
export const QEMU_GID = 107;
const MiB = 1024n * 1024n;
/** The smallest disk.img the driver makes: CDI sizes images in whole MiB, and an empty one is no disk. */
export const MIN_DISK_IMAGE_BYTES = MiB;

/** An overhead as an exact fraction, from a decimal string such as "0.055" (0 ≤ overhead < 1). */
export interface Overhead {
  text: string;
  num: bigint;
  den: bigint;
}

export function parseOverhead(text: string, where: string): Overhead {
  const m = /^(0|1)?(?:\.(\d{1,9}))?$/.exec(text.trim());
  if (!m || text.trim() === '' || text.trim() === '.') {
    throw invalidInput(`${where} ${JSON.stringify(text)} must be a decimal number from 0 up to (not including) 1, e.g. 0.055`);
  }
  const frac = m[2] ?? '';
  const den = 10n ** BigInt(frac.length);
  const num = BigInt(m[1] ?? '0') * den + BigInt(frac || '0');
  if (num >= den) throw invalidInput(`${where} ${text} must be below 1`);
  return { text: text.trim(), num, den };
}

/**
 * The size of disk.img on a Filesystem volume of `capacity` bytes, as CDI computes it:
 * round down to 1 MiB of ceil((1 − overhead) × capacity).
 */
export function diskImageSize(capacity: bigint, overhead: Overhead): bigint {
  const usable = ((overhead.den - overhead.num) * capacity + overhead.den - 1n) / overhead.den;
  return (usable / MiB) * MiB;
}

/** The smallest capacity whose disk.img holds MIN_DISK_IMAGE_BYTES at this overhead. */
export function minDiskImageCapacity(overhead: Overhead): bigint {
  // ceil((den − num) × c / den) ≥ M  ⟺  (den − num) × c > (M − 1) × den, for a whole number M.
  return ((MIN_DISK_IMAGE_BYTES - 1n) * overhead.den) / (overhead.den - overhead.num) + 1n;
}

/**
 * The capacity of a volume with a disk image: `capacity` itself when its disk.img holds 1 MiB, else the
 * smallest capacity whose image does, when `limit` (0: none) allows it; OUT_OF_RANGE when it does not.
 */
export function capacityForDiskImage(capacity: bigint, limit: bigint, overhead: Overhead): bigint {
  const min = minDiskImageCapacity(overhead);
  if (capacity >= min) return capacity;
  if (limit > 0n && min > limit) {
    throw outOfRange(
      `disk.img must hold at least ${MIN_DISK_IMAGE_BYTES} bytes (1 MiB): at filesystem overhead ${overhead.text} that takes a volume of ` +
        `${min} bytes, above limit_bytes ${limit} (${capacity} bytes would give a disk.img of ${diskImageSize(capacity, overhead)} bytes)`,
    );
  }
  return min;
}

/**
 * Create (or grow) disk.img in `dir` to `size` bytes, owned by qemu (107:107), mode 0660; sparse unless
 * `preallocated`, in which case the new range is allocated and the method used is returned.
 */
export async function ensureDiskImage(
  host: Host,
  dir: string,
  size: bigint,
  preallocated: boolean,
  tc: PreallocateContext,
): Promise<PreallocationMethod> {
  const file = diskImagePath(dir);
  const fh = await fsp.open(file, 'a', 0o660);
  try {
    const from = (await fh.stat({ bigint: true })).size;
    if (from < size) await fh.truncate(Number(size));
    await host.files.chown(file, QEMU_UID, QEMU_GID);
    await fh.chmod(0o660);
    const method: PreallocationMethod = preallocated && size > from ? await host.data.preallocate(file, from, size - from, tc) : 'none';
    // fsync flushes the inode whichever descriptor wrote to it (preallocate uses its own).
    await fh.sync();
    return method;
  } finally {
    await fh.close();
  }
}
