// Shared machinery of the fault suites (test/faults/): a seeded PRNG, kill -9 of the daemon with its
// tools (as a container runtime would), the kernel's view of mounts and loop devices, fake tools on PATH.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { launchDaemon, type Daemon } from './daemon.js';

// ---------------------------------------------------------------------------------------------------
// Environment knobs

/** A positive integer from the environment, or `dflt` when unset/empty. */
export function intEnv(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v.trim() === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name}=${v} is not a non-negative integer`);
  return n;
}

/** The seed named by FAULT_SEED (decimal or 0x hex), else a fresh one. Always logged by the caller. */
export function seedFromEnv(name = 'FAULT_SEED'): number {
  const v = process.env[name];
  if (v && v.trim() !== '') {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new Error(`${name}=${v} is not a number`);
    return n >>> 0;
  }
  return (Math.floor(Math.random() * 0x1_0000_0000) ^ Date.now()) >>> 0;
}

// ---------------------------------------------------------------------------------------------------
// Seeded PRNG (sfc32 seeded through splitmix32): the same seed gives the same sequence of choices.

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    let s = seed >>> 0;
    const split = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = split();
    this.b = split();
    this.c = split();
    this.d = split();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** [0, 1) */
  next(): number {
    return this.u32() / 0x1_0000_0000;
  }

  /** An integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)]!;
  }

  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  bytes(n: number): Buffer {
    const buf = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) buf.writeUInt32LE(this.u32(), i);
    for (; i < n; i++) buf[i] = this.u32() & 0xff;
    return buf;
  }

  /** A child generator: its own stream, so adding draws in one place does not shift the other. */
  fork(): Rng {
    return new Rng(this.u32());
  }
}

// ---------------------------------------------------------------------------------------------------
// Small utilities

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000, every = 25): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

/** Resolves after `us` microseconds, measured with hrtime (setTimeout alone is only ms-grained). */
export async function preciseDelay(us: number): Promise<void> {
  const until = process.hrtime.bigint() + BigInt(Math.max(0, Math.round(us))) * 1000n;
  const coarse = us / 1000 - 1.5;
  if (coarse >= 1) await sleep(Math.floor(coarse));
  while (process.hrtime.bigint() < until) await new Promise<void>((r) => setImmediate(r));
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function grpcCode(err: unknown): string {
  const code = (err as grpc.ServiceError | undefined)?.code;
  return typeof code === 'number' ? (grpc.status[code] ?? String(code)) : 'NOT_A_GRPC_ERROR';
}

export function grpcDetails(err: unknown): string {
  const e = err as grpc.ServiceError | undefined;
  return e?.details ?? (err instanceof Error ? err.message : String(err));
}

/** major:minor of a dev_t as Linux encodes it (as in mountinfo and losetup). */
export function devString(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

// ---------------------------------------------------------------------------------------------------
// The kernel's view: mounts and loop devices

export interface Mount {
  mountPoint: string;
  /** Path inside the mounted filesystem (a bind of a subdirectory shows that directory). */
  root: string;
  device: string;
  fsType: string;
  source: string;
  options: string[];
}

const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

export function readMountinfo(): Mount[] {
  const out: Mount[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const head = line.slice(0, sep).split(' ');
    const tail = line.slice(sep + 3).split(' ');
    out.push({
      mountPoint: unescape(head[4]!),
      root: unescape(head[3]!),
      device: head[2]!,
      options: head[5]!.split(','),
      fsType: tail[0]!,
      source: unescape(tail[1] ?? ''),
    });
  }
  return out;
}

export function mountsAt(p: string, mounts = readMountinfo()): Mount[] {
  return mounts.filter((m) => m.mountPoint === p);
}

export function mountsUnder(dir: string, mounts = readMountinfo()): Mount[] {
  return mounts.filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(`${dir}/`));
}

/** The mount `p` lives on (longest mount point prefix). */
export function mountContaining(p: string, mounts = readMountinfo()): Mount {
  let best: Mount | undefined;
  for (const m of mounts) {
    const mp = m.mountPoint;
    if (p === mp || mp === '/' || p.startsWith(`${mp}/`)) {
      if (!best || mp.length >= best.mountPoint.length) best = m;
    }
  }
  return best!;
}

export interface Loop {
  name: string;
  backFile: string;
  deleted: boolean;
  /** Marked for detaching (AUTOCLEAR): it goes when its last opener closes it, and may then back anything. */
  autoclear: boolean;
}

export function listLoops(): Loop[] {
  const text = execFileSync('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE,AUTOCLEAR'], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  if (!text.trim()) return [];
  const data = JSON.parse(text) as { loopdevices?: Array<{ name: string; 'back-file': string | null; autoclear: boolean | string }> };
  return (data.loopdevices ?? []).map((l) => {
    const raw = (l['back-file'] ?? '').trim();
    const deleted = raw.endsWith(' (deleted)');
    return { name: l.name, backFile: deleted ? raw.slice(0, -' (deleted)'.length) : raw, deleted, autoclear: l.autoclear === true || l.autoclear === '1' };
  });
}

/**
 * Stands in for the other openers of loop devices on a real node (udev's blkid after every change
 * event, a monitoring agent, a backup tool): opens the loop devices backed by files under `dir` at
 * random, mostly for a few milliseconds and now and then for seconds. While a device is held, a detach
 * only marks it (AUTOCLEAR) and the kernel lets it go on the last close.
 */
export class LoopProber {
  readonly counts = { opens: 0, longHolds: 0 };
  private timer: NodeJS.Timeout | undefined;
  private readonly held = new Map<number, NodeJS.Timeout>();

  constructor(
    private readonly rng: Rng,
    private readonly dir: string,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.probe(), 15);
  }

  private probe(): void {
    const devices = readdirSync('/sys/block').filter((n) => {
      if (!n.startsWith('loop')) return false;
      try {
        return readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8').startsWith(`${this.dir}/`);
      } catch {
        return false;
      }
    });
    if (devices.length === 0 || this.rng.int(0, 2) !== 0) return;
    let fd: number;
    try {
      fd = openSync(`/dev/${this.rng.pick(devices)}`, 'r');
    } catch {
      return; // detached meanwhile
    }
    this.counts.opens++;
    const long = this.rng.int(0, 19) === 0;
    if (long) this.counts.longHolds++;
    const ms = long ? this.rng.int(1_500, 3_000) : this.rng.int(1, 20);
    this.held.set(fd, setTimeout(() => this.close(fd), ms));
  }

  private close(fd: number): void {
    clearTimeout(this.held.get(fd));
    this.held.delete(fd);
    closeSync(fd);
  }

  /** Stop probing and close every device still held. */
  stop(): void {
    clearInterval(this.timer);
    for (const fd of [...this.held.keys()]) this.close(fd);
  }
}

export function loopsUnder(dir: string): Loop[] {
  return listLoops().filter((l) => l.backFile.startsWith(`${dir}/`));
}

// ---------------------------------------------------------------------------------------------------
// Fake tools on PATH

/** The real location of a tool (searched on the current PATH, skipping `skipDir`). */
export function realTool(name: string, skipDir?: string): string {
  for (const d of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (!d || d === skipDir) continue;
    const p = path.join(d, name);
    if (existsSync(p)) return p;
  }
  throw new Error(`${name} is not on PATH`);
}

/** Write executable shell scripts named after tools into `dir` (created). */
export function writeFakeTools(dir: string, tools: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  for (const [name, script] of Object.entries(tools)) {
    const file = path.join(dir, name);
    writeFileSync(file, script);
    chmodSync(file, 0o755);
  }
  return dir;
}

/** Run `fn` (typically a daemon start) with `dir` first on PATH; the PATH is restored afterwards. */
export async function withPathPrefix<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.PATH;
  process.env.PATH = `${dir}:${saved ?? ''}`;
  try {
    return await fn();
  } finally {
    process.env.PATH = saved;
  }
}

// ---------------------------------------------------------------------------------------------------
// A daemon that can be killed like a container: the daemon and every tool it runs, at once

/** A daemon leading its own process group: killGroup(), killDaemonOnly(), reaped(), lines(), waitLines(). */
export type GroupDaemon = Daemon;

/**
 * Like startDriver (test/helpers/driver.ts) but the daemon leads its own process group, so a kill -9
 * can take its tools (mount, losetup, cp, fallocate, xfs_quota) down in the same instant, as the
 * kernel does to a container's processes when its init dies.
 */
export function startGroupDaemon(opts: { dir: string; args: string[]; node?: string; startMs?: number }): Promise<GroupDaemon> {
  return launchDaemon({
    socket: path.join(opts.dir, `csi-${Math.random().toString(36).slice(2, 8)}.sock`),
    node: opts.node ?? 'test-node',
    metricsAddress: 'off',
    args: opts.args,
    group: true,
    startMs: opts.startMs ?? 20_000,
  });
}

// ---------------------------------------------------------------------------------------------------
// Leftover checks for afterAll: nothing mounted under, and no loop device backed by, a scratch dir

export function leftovers(dir: string): string[] {
  const out: string[] = [];
  for (const m of mountsUnder(dir)) out.push(`mount left at ${m.mountPoint} (${m.fsType} ${m.source} ${m.root})`);
  for (const l of loopsUnder(dir)) out.push(`loop device left: ${l.name} -> ${l.backFile}${l.deleted ? ' (deleted)' : ''}`);
  return out;
}
