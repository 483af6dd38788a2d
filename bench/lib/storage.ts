// Space and files: free and allocated bytes, the page cache, loop devices a benchmark makes itself, the
// pool's trash, and the capacity that gives a disk.img of an exact size.
import { mkdirSync, readdirSync, rmSync, statSync, statfsSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { MiB, sleep } from './common.js';
import { loopDevices, readMountPoints } from './leaks.js';
import { runTool, sh } from './tools.js';

/** Space an unprivileged writer could still use on the filesystem holding `p` (statfs bavail), bytes. */
export function freeBytes(p: string): number {
  const s = statfsSync(p);
  return s.bavail * s.bsize;
}

/** Bytes allocated on disk for one file (stat blocks x 512). */
export function allocatedBytes(file: string): number {
  return statSync(file).blocks * 512;
}

/** Flush dirty data everywhere and, unless BENCH_DROP_CACHES=0, drop the page cache (cold reads). */
export async function settleCaches(): Promise<void> {
  await runTool('sync', []);
  if (process.env.BENCH_DROP_CACHES !== '0') writeFileSync('/proc/sys/vm/drop_caches', '3');
}

export interface LoopFile {
  file: string;
  device: string;
}

/**
 * A sparse file of `bytes` at `file` attached to a loop device (direct I/O on, as a disk would
 * behave, unless directIo is false). The harness's cleanup detaches it and removes the file if it is
 * under the benchmark's directory; releaseLoop() does it earlier.
 */
export function makeLoopDevice(file: string, bytes: number, { directIo = true, prefill = false } = {}): LoopFile {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, '');
  truncateSync(file, bytes);
  // prefill: write the whole backing file first, so that writes through the device do not also pay for
  // the host filesystem allocating the file (a real disk has its blocks). Then keep mkfs from discarding.
  if (prefill) sh('dd', ['if=/dev/zero', `of=${file}`, 'bs=8M', `count=${Math.ceil(bytes / (8 * MiB))}`, 'conv=notrunc,fsync', 'status=none']);
  let device: string;
  try {
    device = sh('losetup', ['--find', '--show', ...(directIo ? ['--direct-io=on'] : []), file]).trim();
  } catch (err) {
    if (!directIo) throw err;
    device = sh('losetup', ['--find', '--show', file]).trim();
  }
  return { file, device };
}

/** Unmount `mountPoint` when mounted, detach the device, remove its backing file: a pool's teardown mid-benchmark. */
export async function releaseLoop({ file, device }: LoopFile, mountPoint?: string): Promise<void> {
  if (mountPoint && readMountPoints().includes(mountPoint)) sh('umount', [mountPoint]);
  try {
    sh('losetup', ['--detach', device]);
  } catch {
    // already gone (autoclear)
  }
  for (let i = 0; i < 50 && loopDevices().some((l) => l.name === device && l.backFile === file); i++) await sleep(100);
  rmSync(file, { force: true });
}

/** Wait until `<pool>/.hpp/trash` is empty (deleted data is removed in the background); false on timeout. */
export async function waitTrashEmpty(pool: string, timeoutMs = 120_000): Promise<boolean> {
  const trash = path.join(pool, '.hpp', 'trash');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let n = 0;
    try {
      n = readdirSync(trash).length;
    } catch {
      n = 0;
    }
    if (n === 0) return true;
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
}

/** Capacity whose disk.img (CDI formula, overhead 0.055) is exactly `imageBytes` (a whole number of MiB). */
export function capacityForDiskImage(imageBytes: number, overheadPermille = 55): bigint {
  const img = BigInt(imageBytes);
  const keep = 1000n - BigInt(overheadPermille);
  let cap = (img * 1000n + keep - 1n) / keep;
  const MiBn = BigInt(MiB);
  const imageOf = (c: bigint) => ((keep * c + 999n) / 1000n / MiBn) * MiBn;
  while (imageOf(cap) < img) cap += 1n;
  if (imageOf(cap) !== img) throw new Error(`no capacity gives a disk.img of exactly ${imageBytes} bytes`);
  return cap;
}
