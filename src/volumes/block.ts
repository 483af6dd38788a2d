import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { outOfRange } from '../csi/errors.js';
import { attachLoop, detachLoop, listLoopDevices, loopDevicesFor, type LoopDevice } from '../system/loop.js';
import { bindMount } from '../system/mount.js';

export const MiB = 1024n * 1024n;
/** Size of a block volume when the request names none. The image is sparse, so this costs nothing up front. */
export const DEFAULT_BLOCK_BYTES = 1024n * MiB;
export const BLOCK_DIR = '.hpp/block';

export function blockImagePath(name: string): string {
  return path.posix.join(BLOCK_DIR, `${name}.img`);
}

/** The size of a block volume for a capacity range: a whole number of MiB, never below what was asked. */
export function blockCapacity(range: { required: bigint; limit: bigint }): bigint {
  const roundUp = (n: bigint) => ((n + MiB - 1n) / MiB) * MiB;
  if (range.required > 0n) {
    const size = roundUp(range.required);
    if (range.limit > 0n && size > range.limit) {
      throw outOfRange(`block volumes are whole MiB: ${range.required} bytes rounds up to ${size}, above limit_bytes ${range.limit}`);
    }
    return size;
  }
  if (range.limit > 0n) {
    const size = range.limit < DEFAULT_BLOCK_BYTES ? (range.limit / MiB) * MiB : DEFAULT_BLOCK_BYTES;
    if (size === 0n) throw outOfRange(`limit_bytes ${range.limit} is below the 1 MiB minimum of a block volume`);
    return size;
  }
  return DEFAULT_BLOCK_BYTES;
}

/** A sparse image file of exactly `size` bytes, flushed to disk. */
export async function buildBlockImage(file: string, size: bigint): Promise<void> {
  const fh = await fsp.open(file, 'wx', 0o600);
  try {
    await fh.truncate(Number(size));
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Attach the image (reusing an attachment of the same mode) and bind the loop device node onto the
 * target file, which is created if missing.
 */
export async function publishBlock(image: string, target: string, opts: { readOnly: boolean }): Promise<LoopDevice> {
  const dev = await attachLoop(image, { readOnly: opts.readOnly });
  await fsp.mkdir(path.dirname(target), { recursive: true, mode: 0o750 });
  const fh = await fsp.open(target, 'a', 0o600);
  await fh.close();
  await bindMount(dev.name, target, { readOnly: opts.readOnly });
  return dev;
}

/** Is `target` the device node of one of `image`'s loop devices? */
export async function targetIsDeviceOf(target: string, image: string): Promise<boolean> {
  try {
    const st = await fsp.stat(target, { bigint: true });
    if (!st.isBlockDevice()) return false;
    for (const d of await loopDevicesFor(image)) {
      const ds = await fsp.stat(d.name, { bigint: true });
      if (ds.rdev === st.rdev) return true;
    }
    return false;
  } catch {
    return false;
  }
}

/** Detach the image's loop devices whose mode no publication still uses. */
export async function detachUnused(image: string, stillUsed: { readOnly: boolean }[]): Promise<void> {
  let devices: LoopDevice[];
  try {
    devices = await loopDevicesFor(image);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const d of devices) {
    if (!stillUsed.some((u) => u.readOnly === d.readOnly)) await detachLoop(d.name);
  }
}

export async function detachAll(image: string): Promise<void> {
  await detachUnused(image, []);
}

/**
 * Loop devices backed by files in a pool's block area that no volume owns any more (deleted image,
 * or no record): detached. Returns what was detached.
 */
export async function detachOrphanLoops(blockDir: string, ownedImages: Set<string>): Promise<string[]> {
  const detached: string[] = [];
  for (const d of await listLoopDevices()) {
    const file = d.backFile.replace(/ \(deleted\)$/, '');
    if (path.dirname(file) !== blockDir) continue;
    const gone = d.backFile.endsWith(' (deleted)') || !ownedImages.has(file);
    if (gone) {
      await detachLoop(d.name);
      detached.push(d.name);
    }
  }
  return detached;
}
