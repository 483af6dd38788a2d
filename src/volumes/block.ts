import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { outOfRange } from '../errors.js';
import type { Logger } from '../observe/logger.js';
import type { ToolContext } from '../system/exec.js';
import type { Host } from '../system/host.js';
import { describeHolders, devString, fileIdentity, usableFor, type DetachOutcome, type LoopDevice } from '../system/loop.js';

export const MiB = 1024n * 1024n;
/** Size of a block volume when the request names none. The image is sparse, so this costs nothing up front. */
export const DEFAULT_BLOCK_BYTES = 1024n * MiB;
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
 * Attach the image (reusing an attachment of the same mode that is not detaching) and bind the loop
 * device node onto the target file, which is created if missing. The bind happens in the same turn of
 * the loop table as the attach, and is checked afterwards: a target is never left bound to a device
 * that does not back this image.
 */
export async function publishBlock(host: Host, image: string, target: string, opts: { readOnly: boolean }, tc?: ToolContext): Promise<LoopDevice> {
  await fsp.mkdir(path.dirname(target), { recursive: true, mode: 0o750 });
  const fh = await fsp.open(target, 'a', 0o600);
  await fh.close();
  const identity = await fileIdentity(image);
  return host.loops.withTable(async (t) => {
    const dev = await t.attach(image, { readOnly: opts.readOnly });
    await host.mounts.bind(dev.name, target, { readOnly: opts.readOnly }, tc);
    const bound = await host.files.shows(target);
    if (bound?.rdev === undefined || devString(bound.rdev) !== dev.devNum || !usableFor(await t.status(dev.name), identity)) {
      await host.mounts.unmount(target, { ...tc, signal: undefined }).catch(() => {});
      throw new Error(`${dev.name} stopped backing ${image} while it was bound onto ${target}; the bind was undone`);
    }
    return dev;
  }, tc);
}

/**
 * What is bound at a block publication's target: a usable loop device of this image ('ours'), a loop
 * device that no longer backs it or is detaching ('stale': its bind must be re-made, or the target
 * would reach whatever the kernel gives that device next), or anything else.
 */
export type BlockTarget = { kind: 'ours'; device: string } | { kind: 'stale'; device: string; why: string } | { kind: 'other' };

export async function blockTargetState(host: Host, target: string, image: string): Promise<BlockTarget> {
  const st = await host.files.shows(target).catch(() => undefined);
  if (st?.rdev === undefined) return { kind: 'other' };
  const device = host.loops.deviceWithNumber(st.rdev);
  if (!device) return { kind: 'other' };
  let identity;
  try {
    identity = await fileIdentity(image);
  } catch (err) {
    // With the image gone there is no telling what the device backs: nothing is touched.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return { kind: 'other' };
  }
  const status = await host.loops.status(device);
  if (!status || status.backing.dev !== identity.dev || status.backing.ino !== identity.ino) return { kind: 'stale', device, why: `${device} no longer backs ${image}` };
  if (status.detaching) return { kind: 'stale', device, why: `${device} is being detached (marked autoclear)` };
  return { kind: 'ours', device };
}

/**
 * Detach the image's loop devices whose mode no publication still uses. Returns what happened to each:
 * a device another process holds open is only marked for detaching by the kernel (see detachLoop).
 */
export async function detachUnused(host: Host, image: string, stillUsed: { readOnly: boolean }[], tc?: ToolContext): Promise<DetachOutcome[]> {
  let devices: LoopDevice[];
  try {
    devices = await host.loops.devicesFor(image, tc);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const outcomes: DetachOutcome[] = [];
  for (const d of devices) {
    // One that is detaching already goes by itself once its last opener closes it.
    if (!d.detaching && !stillUsed.some((u) => u.readOnly === d.readOnly)) outcomes.push(await host.loops.detach(d.name, tc));
  }
  return outcomes;
}

export async function detachAll(host: Host, image: string, tc?: ToolContext): Promise<DetachOutcome[]> {
  return detachUnused(host, image, [], tc);
}

/** Log the detaches that the kernel could only defer, with what holds those devices. */
export function reportDeferredDetaches(outcomes: DetachOutcome[], log: Logger, context: object): void {
  for (const o of outcomes) {
    if (o.detached) continue;
    log.warn(
      { ...context, device: o.device, holders: o.holders, loopsOver: o.loopsOver },
      `loop device ${o.device} is held open by ${describeHolders(o.holders, o.loopsOver)}; the kernel detaches it when that is closed, and it is not used again meanwhile`,
    );
  }
}

/**
 * Loop devices backed by files in a pool's block area that no volume owns any more (deleted image,
 * or no record): detached. Returns what happened to each.
 */
export async function detachOrphanLoops(host: Host, blockDir: string, ownedImages: Set<string>, tc?: ToolContext): Promise<DetachOutcome[]> {
  const outcomes: DetachOutcome[] = [];
  for (const d of await host.loops.list(tc)) {
    const file = d.backFile.replace(/ \(deleted\)$/, '');
    if (path.dirname(file) !== blockDir || d.detaching) continue;
    const gone = d.backFile.endsWith(' (deleted)') || !ownedImages.has(file);
    if (gone) outcomes.push(await host.loops.detach(d.name, tc));
  }
  return outcomes;
}
