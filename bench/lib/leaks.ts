// The kernel's view of what a benchmark may leave behind: mount points and loop devices.
import { existsSync, readFileSync } from 'node:fs';
import { sh } from './tools.js';

/** Every mount point of this mount namespace, unescaped. */
export function readMountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m)
    .map((m) => m.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

export function mountPointsUnder(dir: string): string[] {
  return readMountPoints().filter((m) => m === dir || m.startsWith(`${dir}/`));
}

export interface LoopDevice {
  name: string;
  /** Without " (deleted)". */
  backFile: string;
  dio: boolean;
  logSec: number;
}

interface LosetupJson {
  loopdevices?: Array<{ name: string; 'back-file'?: string | null; dio?: boolean | string | number; 'log-sec'?: number | string }>;
}

/** Loop devices as losetup lists them. */
export function loopDevices(): LoopDevice[] {
  const out = sh('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE,DIO,LOG-SEC']).trim();
  if (!out) return [];
  return ((JSON.parse(out) as LosetupJson).loopdevices ?? []).map((d) => ({
    name: d.name,
    backFile: String(d['back-file'] ?? '').trim().replace(/ \(deleted\)$/, ''),
    dio: d.dio === true || d.dio === '1' || d.dio === 1,
    logSec: Number(d['log-sec'] ?? 0),
  }));
}

export function loopsUnder(dir: string): LoopDevice[] {
  return loopDevices().filter((d) => d.backFile.startsWith(`${dir}/`));
}

/** What a benchmark left behind under its scratch directory: mounts, loop devices, the directory. */
export function leaksUnder(dir: string): string[] {
  const leaks: string[] = [];
  for (const m of mountPointsUnder(dir)) leaks.push(`mount ${m}`);
  for (const l of loopsUnder(dir)) leaks.push(`loop ${l.name} -> ${l.backFile}`);
  if (existsSync(dir)) leaks.push(`directory ${dir}`);
  return leaks;
}
