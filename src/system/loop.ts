import { promises as fsp } from 'node:fs';
import { status } from '@grpc/grpc-js';
import { run } from './exec.js';

export interface LoopDevice {
  name: string;
  backFile: string;
  backIno: bigint;
  /** "major:minor" of the filesystem holding the backing file. */
  backDev: string;
  readOnly: boolean;
  directIo: boolean;
}

interface LosetupJson {
  loopdevices?: Array<{ name: string; 'back-file': string | null; 'back-ino': number | string | null; 'back-maj:min': string | null; ro: boolean | string; dio: boolean | string }>;
}

const truthy = (v: boolean | string) => v === true || v === '1' || v === 'true';

/** Every attached loop device with what backs it (one `losetup --list --json`). */
export async function listLoopDevices(): Promise<LoopDevice[]> {
  const { stdout } = await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN,RO,DIO']);
  if (!stdout.trim()) return [];
  const data = JSON.parse(stdout) as LosetupJson;
  return (data.loopdevices ?? []).map((d) => ({
    name: d.name,
    backFile: (d['back-file'] ?? '').trim(),
    backIno: BigInt(d['back-ino'] ?? 0),
    backDev: (d['back-maj:min'] ?? '').trim(),
    readOnly: truthy(d.ro),
    directIo: truthy(d.dio),
  }));
}

/** major:minor of a dev_t as Linux encodes it. */
export function devString(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** Loop devices backed by this very file (same inode on the same filesystem, whatever the path said). */
export async function loopDevicesFor(file: string): Promise<LoopDevice[]> {
  const st = await fsp.stat(file, { bigint: true });
  const dev = devString(st.dev);
  return (await listLoopDevices()).filter((d) => d.backIno === st.ino && d.backDev === dev);
}

/**
 * Attach `file`, reusing an attachment with the same read-only mode if one exists (never two devices
 * for one file and mode). Direct I/O is asked for and silently falls back where the filesystem lacks it.
 */
export async function attachLoop(file: string, opts: { readOnly: boolean }): Promise<LoopDevice> {
  const existing = (await loopDevicesFor(file)).find((d) => d.readOnly === opts.readOnly);
  if (existing) return existing;
  const args = ['--find', '--show', '--direct-io=on', ...(opts.readOnly ? ['--read-only'] : []), file];
  let name: string;
  try {
    name = (await run('losetup', args, { failCode: status.RESOURCE_EXHAUSTED })).stdout.trim();
  } catch (err) {
    if (!/direct|Invalid argument/i.test(String((err as Error).message))) throw err;
    name = (await run('losetup', args.filter((a) => a !== '--direct-io=on'), { failCode: status.RESOURCE_EXHAUSTED })).stdout.trim();
  }
  const attached = (await loopDevicesFor(file)).find((d) => d.name === name);
  if (!attached) throw new Error(`losetup attached ${file} as ${name}, but the device does not show it`);
  return attached;
}

export async function detachLoop(name: string): Promise<void> {
  try {
    await run('losetup', ['--detach', name]);
  } catch (err) {
    // Already gone is what we wanted.
    if (/No such device|No such file/i.test(String((err as Error).message))) return;
    throw err;
  }
}

/** Tell the loop driver the backing file changed size. */
export async function refreshLoopCapacity(name: string): Promise<void> {
  await run('losetup', ['--set-capacity', name]);
}

/** Size of a block device in bytes, from sysfs (no tool run). */
export async function blockDeviceSize(name: string): Promise<bigint> {
  const base = name.replace(/^\/dev\//, '');
  const sectors = BigInt((await fsp.readFile(`/sys/class/block/${base}/size`, 'utf8')).trim());
  return sectors * 512n;
}
