import { promises as fsp, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import path from 'node:path';
import { KeyedLock } from '../util/keyed-lock.js';
import { noSpace, ToolError } from '../errors.js';
import { run, type ExecResult } from './exec.js';
import { mountBackend, type MountContext } from './native-mount.js';

export interface LoopDevice {
  name: string;
  /** "major:minor" of the loop device itself. */
  devNum: string;
  backFile: string;
  backIno: bigint;
  /** "major:minor" of the filesystem holding the backing file. */
  backDev: string;
  readOnly: boolean;
  directIo: boolean;
  /**
   * AUTOCLEAR is set: a detach found the device open, and the kernel lets it go when its last opener
   * closes it. After that it backs nothing and may be given to any other file, so a device in this
   * state is never used again for a publication.
   */
  detaching: boolean;
}

/** What the kernel identifies a backing file by: its filesystem and inode, whatever the path. */
export interface FileIdentity {
  dev: string;
  ino: bigint;
}

interface LosetupJson {
  loopdevices?: Array<{
    name: string;
    'maj:min': string | null;
    'back-file': string | null;
    'back-ino': number | string | null;
    'back-maj:min': string | null;
    ro: boolean | string;
    dio: boolean | string;
    autoclear: boolean | string;
  }>;
}

const truthy = (v: boolean | string) => v === true || v === '1' || v === 'true';
const COLUMNS = 'NAME,MAJ:MIN,BACK-FILE,BACK-INO,BACK-MAJ:MIN,RO,DIO,AUTOCLEAR';

/**
 * Why the node's loop table has one queue: LOOP_CLR_FD only marks a device for detaching when it finds
 * it open, and `losetup --list` opens every device it reports (LOOP_GET_STATUS64). Were our own
 * listings to overlap our own detaches, those detaches would be deferred by ourselves. Attaching and
 * binding a device onto a target also happen in the queue, so that nothing of ours can detach the
 * device between the kernel saying it backs the image and the bind. Each turn is a few milliseconds.
 */
const loopTable = new KeyedLock();
const LOOP_TABLE = 'loop-table';

/** The tool-context part of a MountContext (run() takes no backend). */
function toolsOf(mc: MountContext) {
  return { log: mc.log, signal: mc.signal };
}

async function listUnlocked(devices: string[] = [], mc: MountContext = {}): Promise<LoopDevice[]> {
  const { stdout } = await run('losetup', ['--list', '--json', '--output', COLUMNS, ...devices], toolsOf(mc));
  if (!stdout.trim()) return [];
  const data = JSON.parse(stdout) as LosetupJson;
  return (data.loopdevices ?? []).map((d) => ({
    name: d.name,
    devNum: (d['maj:min'] ?? '').trim(),
    backFile: (d['back-file'] ?? '').trim(),
    backIno: BigInt(d['back-ino'] ?? 0),
    backDev: (d['back-maj:min'] ?? '').trim(),
    readOnly: truthy(d.ro),
    directIo: truthy(d.dio),
    detaching: truthy(d.autoclear),
  }));
}

/** major:minor of a dev_t as Linux encodes it. */
export function devString(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

export async function fileIdentity(file: string): Promise<FileIdentity> {
  const st = await fsp.stat(file, { bigint: true });
  return { dev: devString(st.dev), ino: st.ino };
}

/** Does the kernel say `d` is backed by that very file? */
export function backs(d: LoopDevice, file: FileIdentity): boolean {
  return d.backIno === file.ino && d.backDev === file.dev;
}

async function devicesForUnlocked(file: string, mc: MountContext = {}): Promise<LoopDevice[]> {
  const id = await fileIdentity(file);
  return (await listUnlocked([], mc)).filter((d) => backs(d, id));
}

/** Every attached loop device with what backs it (one `losetup --list --json`). */
export function listLoopDevices(mc: MountContext = {}): Promise<LoopDevice[]> {
  return loopTable.withKey(LOOP_TABLE, () => listUnlocked([], mc));
}

/** Loop devices backed by this very file (same inode on the same filesystem), detaching ones included. */
export function loopDevicesFor(file: string, mc: MountContext = {}): Promise<LoopDevice[]> {
  return loopTable.withKey(LOOP_TABLE, () => devicesForUnlocked(file, mc));
}

/** What the kernel says of one loop device: the file backing it, by identity, and its flags. */
export interface LoopStatus {
  backing: FileIdentity;
  readOnly: boolean;
  detaching: boolean;
}

const LO_FLAGS_READ_ONLY = 1;
const LO_FLAGS_AUTOCLEAR = 4;

async function statusUnlocked(device: string, mc: MountContext = {}): Promise<LoopStatus | undefined> {
  const backend = mc.backend ?? mountBackend;
  if (backend.kind === 'syscall') {
    let st;
    try {
      st = backend.addon.loopStatus(device);
    } catch (err) {
      const e = err as Error & { errno?: number; syscall?: string };
      throw new Error(`${e.syscall ?? 'LOOP_GET_STATUS64'} on ${device}: ${e.message}`);
    }
    if (!st) return undefined;
    return {
      backing: { dev: devString(st.backingDevice), ino: st.backingInode },
      readOnly: (st.flags & LO_FLAGS_READ_ONLY) !== 0,
      detaching: (st.flags & LO_FLAGS_AUTOCLEAR) !== 0,
    };
  }
  const [d] = (await listUnlocked([device], mc).catch(() => [])).filter((x) => x.name === device && x.backFile !== '');
  return d && { backing: { dev: d.backDev, ino: d.backIno }, readOnly: d.readOnly, detaching: d.detaching };
}

/** The kernel's status of one loop device (LOOP_GET_STATUS64); undefined when it backs nothing. */
export function loopStatus(device: string, mc: MountContext = {}): Promise<LoopStatus | undefined> {
  return loopTable.withKey(LOOP_TABLE, () => statusUnlocked(device, mc));
}

/** Is `status` a usable attachment of that very file? */
export function usableFor(status: LoopStatus | undefined, file: FileIdentity): boolean {
  return status !== undefined && !status.detaching && status.backing.dev === file.dev && status.backing.ino === file.ino;
}

/** The loop device whose node has this rdev ("/dev/loopN"), or undefined when it is not a loop device. */
export function loopDeviceWithNumber(rdev: bigint): string | undefined {
  const num = devString(rdev);
  let link: string;
  try {
    link = readlinkSync(`/sys/dev/block/${num}`);
  } catch {
    return undefined;
  }
  const base = path.basename(link);
  return /^loop\d+$/.test(base) ? `/dev/${base}` : undefined;
}

/** `losetup --find`: running out of loop devices is a lack of space like any other, not a tool failure. */
async function losetupFind(args: string[], mc: MountContext): Promise<ExecResult> {
  try {
    return await run('losetup', args, toolsOf(mc));
  } catch (err) {
    if (err instanceof ToolError && /cannot find an unused loop device|could not find any free loop device/i.test(err.result.stderr)) {
      throw noSpace(`no free loop device for ${args[args.length - 1]}: ${err.message}`, err);
    }
    throw err;
  }
}

async function attachUnlocked(file: string, opts: { readOnly: boolean }, mc: MountContext = {}): Promise<LoopDevice> {
  const existing = (await devicesForUnlocked(file, mc)).find((d) => d.readOnly === opts.readOnly && !d.detaching);
  if (existing) return existing;
  const args = ['--find', '--show', '--direct-io=on', ...(opts.readOnly ? ['--read-only'] : []), file];
  let name: string;
  try {
    name = (await losetupFind(args, mc)).stdout.trim();
  } catch (err) {
    if (!/direct|Invalid argument/i.test(String((err as Error).message))) throw err;
    name = (await losetupFind(args.filter((a) => a !== '--direct-io=on'), mc)).stdout.trim();
  }
  const attached = (await devicesForUnlocked(file, mc)).find((d) => d.name === name);
  if (!attached) throw new Error(`losetup attached ${file} as ${name}, but the kernel does not show ${name} backed by that file`);
  if (attached.detaching) throw new Error(`losetup attached ${file} as ${name}, but ${name} is already marked for detaching`);
  return attached;
}

/** What the loop table lets a caller do within one turn of the queue. */
export interface LoopTableTurn {
  /**
   * Attach `file`, reusing an attachment with the same read-only mode if one exists (never two usable
   * devices for one file and mode) and never one that is detaching. Direct I/O is asked for and
   * silently falls back where the filesystem lacks it.
   */
  attach(file: string, opts: { readOnly: boolean }): Promise<LoopDevice>;
  /** The kernel's status of one device (see loopStatus). */
  status(device: string): Promise<LoopStatus | undefined>;
}

/** Runs `fn` in one turn of the node's loop-table queue (see loopTable). */
export function withLoopTable<T>(fn: (turn: LoopTableTurn) => Promise<T>, mc: MountContext = {}): Promise<T> {
  return loopTable.withKey(LOOP_TABLE, () => fn({ attach: (file, opts) => attachUnlocked(file, opts, mc), status: (device) => statusUnlocked(device, mc) }));
}

export function attachLoop(file: string, opts: { readOnly: boolean }, mc: MountContext = {}): Promise<LoopDevice> {
  return withLoopTable((t) => t.attach(file, opts), mc);
}

/** A process that holds a loop device open. */
export interface LoopHolder {
  pid: number;
  command: string;
}

export type DetachOutcome =
  | { device: string; detached: true }
  | { device: string; detached: false; holders: LoopHolder[]; loopsOver: string[] };

/** sysfs, read without opening the device: is it bound, and is it marked for detaching? */
function sysfsState(device: string): { bound: boolean; autoclear: boolean; backingFile: string } {
  const dir = `/sys/block/${path.basename(device)}/loop`;
  try {
    return {
      bound: true,
      backingFile: readFileSync(`${dir}/backing_file`, 'utf8').trim(),
      autoclear: readFileSync(`${dir}/autoclear`, 'utf8').trim() === '1',
    };
  } catch {
    return { bound: false, autoclear: false, backingFile: '' };
  }
}

/** How long a detach waits for a brief opener (udev's blkid, a listing) to close the device. */
const DETACH_WAIT_MS = 1_000;

/**
 * Detach a loop device. When another process holds it open the kernel only marks it (AUTOCLEAR) and
 * lets it go on the last close; this waits up to DETACH_WAIT_MS for that, and otherwise says who holds
 * it. Either way the device is never used again by us (see LoopDevice.detaching).
 */
export async function detachLoop(name: string, mc: MountContext = {}): Promise<DetachOutcome> {
  const before = sysfsState(name);
  if (!before.bound) return { device: name, detached: true };
  await loopTable.withKey(LOOP_TABLE, async () => {
    try {
      await run('losetup', ['--detach', name], toolsOf(mc));
    } catch (err) {
      // Already gone is what we wanted.
      if (!/No such device|No such file/i.test(String((err as Error).message))) throw err;
    }
  });
  const until = Date.now() + DETACH_WAIT_MS;
  for (let pause = 5; ; pause = Math.min(pause * 2, 100)) {
    const now = sysfsState(name);
    // Gone, or let go and bound again to something else (somebody else's attach) since.
    if (!now.bound || now.backingFile !== before.backingFile || !now.autoclear) return { device: name, detached: true };
    if (Date.now() >= until) {
      return { device: name, detached: false, holders: holdersOf(name), loopsOver: await loopsOver(name, mc) };
    }
    await new Promise((r) => setTimeout(r, pause));
  }
}

/** Processes with an open descriptor on `device` (found through /proc/<pid>/fd, by device number). */
export function holdersOf(device: string): LoopHolder[] {
  let rdev: bigint;
  try {
    rdev = statSync(device, { bigint: true }).rdev;
  } catch {
    return [];
  }
  const holders: LoopHolder[] = [];
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    const holds = fds.some((fd) => {
      try {
        const st = statSync(`/proc/${pid}/fd/${fd}`, { bigint: true });
        return st.isBlockDevice() && st.rdev === rdev;
      } catch {
        return false;
      }
    });
    if (!holds) continue;
    let command = '';
    try {
      command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ').slice(0, 200);
    } catch {
      /* gone meanwhile */
    }
    holders.push({ pid: Number(pid), command });
  }
  return holders;
}

/**
 * Loop devices whose backing file is `device` itself. The kernel holds a device open for such a loop
 * device, with no process to show: kubelet puts one over each block volume it maps into a pod (to keep
 * the device from going away), and detaches it again when it unmaps. Found by the device node's
 * identity, since the path it was attached by (a bind under kubelet's root) may be unmounted by now.
 */
export async function loopsOver(device: string, mc: MountContext = {}): Promise<string[]> {
  let node: FileIdentity;
  try {
    node = await fileIdentity(device);
  } catch {
    return [];
  }
  const over: string[] = [];
  for (const entry of readdirSync('/sys/block').filter((e) => /^loop\d+$/.test(e))) {
    const candidate = `/dev/${entry}`;
    if (candidate === device || !sysfsState(candidate).bound) continue;
    const status = await loopStatus(candidate, mc).catch(() => undefined);
    if (status && status.backing.dev === node.dev && status.backing.ino === node.ino) over.push(candidate);
  }
  return over;
}

/** Who holds a loop device open, in words: processes, and loop devices over it (kubelet's). */
export function describeHolders(holders: LoopHolder[], loopsOver: string[]): string {
  const who = [
    ...holders.map((h) => `pid ${h.pid} (${h.command})`),
    ...loopsOver.map((d) => `loop device ${d} over it (kubelet maps block volumes through one)`),
  ];
  return who.length > 0 ? who.join(', ') : 'another process (gone by now, or in another PID namespace)';
}

/** Tell the loop driver the backing file changed size. */
export async function refreshLoopCapacity(name: string, mc: MountContext = {}): Promise<void> {
  await run('losetup', ['--set-capacity', name], toolsOf(mc));
}

/** Size of a block device in bytes, from sysfs (no tool run). */
export async function blockDeviceSize(name: string): Promise<bigint> {
  const base = name.replace(/^\/dev\//, '');
  const sectors = BigInt((await fsp.readFile(`/sys/class/block/${base}/size`, 'utf8')).trim());
  return sectors * 512n;
}
