import { spawnSync, execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';

export const MiB = 1024 * 1024;

/** Runs a command; its status and output (stdout then stderr), for tests that expect it to fail. */
export function tryRun(cmd: string, args: string[], cwd?: string): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

export interface Fill {
  /** The file's size afterwards. */
  bytes: number;
  /** Why the writer stopped early: 'ENOSPC', 'EDQUOT', or undefined when it wrote all it was asked. */
  refused?: 'ENOSPC' | 'EDQUOT' | string;
  stderr: string;
}

/**
 * Appends `mib` MiB of data to `file` with dd (fsynced at the end), as a container's root would when
 * `dropSysResource`: without CAP_SYS_RESOURCE, which exempts a writer from ext4's quota limits.
 * A child process, so that the errno comes from the kernel as a writer in a pod sees it.
 */
export function fill(file: string, mib: number, opts: { dropSysResource?: boolean } = {}): Fill {
  const dd = ['dd', 'if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`, 'oflag=append', 'conv=notrunc,fsync', 'status=none'];
  const cmd = opts.dropSysResource ? ['setpriv', '--bounding-set=-sys_resource', '--inh-caps=-sys_resource', '--', ...dd] : dd;
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8' });
  let bytes = 0;
  try {
    bytes = statSync(file).size;
  } catch {
    /* not created */
  }
  const stderr = r.stderr ?? '';
  if (r.status === 0) return { bytes, stderr };
  const refused = /No space left on device/.test(stderr) ? 'ENOSPC' : /Disk quota exceeded/.test(stderr) ? 'EDQUOT' : stderr.trim() || `exit ${r.status}`;
  return { bytes, refused, stderr };
}

export function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

/**
 * The blank scratch disks the VM was booted with (hack/kernel-vm/run --disk). Files run in parallel, so
 * each disk has one owner: [0] project-quota.test.ts (device pool), [1] vm-smoke.test.ts.
 */
export function vmDisks(): string[] {
  return (process.env.HPP_KERNEL_DISKS ?? '').split(/\s+/).filter(Boolean);
}

/** Mount options of the filesystem mounted at `dir` (its superblock options included). */
export function mountOptions(dir: string): string[] {
  return sh('findmnt', '-n', '-o', 'OPTIONS', '--mountpoint', dir).trim().split(',');
}
