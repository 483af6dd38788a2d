// Facts about the machine and the checkout a result was measured on.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GiB, ROOT } from './common.js';
import { round } from './stats.js';
import { sh } from './tools.js';

export interface MachineFacts {
  node: string;
  kernel: string;
  cpu: string;
  cpus: number;
  memory_gib: number;
  tmp_dir: string;
  tmp_fs_type: string;
  tmp_fs_source: string;
  util_linux: string;
  driver_commit: string;
  driver_tree_dirty: boolean;
  date: string;
}

function tryTool(cmd: string, args: string[]): string {
  try {
    return sh(cmd, args).trim();
  } catch {
    return 'unknown';
  }
}

function cpuModel(): string {
  try {
    const m = readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.+)$/m);
    return m ? m[1]!.trim() : (os.cpus()[0]?.model ?? 'unknown');
  } catch {
    return os.cpus()[0]?.model ?? 'unknown';
  }
}

/** `dir` is the benchmark's scratch directory: its filesystem is where the benchmark's files live. */
export function machineFacts(dir: string): MachineFacts {
  const [fsType, fsSource] = tryTool('findmnt', ['-n', '-o', 'FSTYPE,SOURCE', '-T', dir]).split(/\s+/);
  const dirty = tryTool('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src', 'cmd', 'proto']);
  return {
    node: process.version,
    kernel: tryTool('uname', ['-r']),
    cpu: cpuModel(),
    cpus: os.cpus().length,
    memory_gib: round(os.totalmem() / GiB, 1),
    tmp_dir: path.dirname(dir),
    tmp_fs_type: fsType ?? 'unknown',
    tmp_fs_source: fsSource ?? 'unknown',
    util_linux: tryTool('losetup', ['--version']).replace(/^.*util-linux\s*/, ''),
    driver_commit: tryTool('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']),
    driver_tree_dirty: dirty !== '' && dirty !== 'unknown',
    date: new Date().toISOString(),
  };
}
