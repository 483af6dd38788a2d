import { run, type ToolContext } from './exec.js';

/**
 * Project quotas through xfs_quota, on XFS and on ext4 (xfs_quota's "foreign" mode, -f, drives the
 * generic quotactl and FS_IOC_FSSETXATTR that ext4 implements). A project is a number tagged on a
 * directory with the inherit flag: everything created below it is counted against the project's limit.
 */
export type ProjectQuotaFs = 'xfs' | 'ext4';

export interface ProjectUsage {
  usedBytes: bigint;
  hardBytes: bigint;
  usedInodes: bigint;
}

function xq(fs: ProjectQuotaFs, mountPoint: string, command: string, tc: ToolContext) {
  return run('xfs_quota', ['-x', ...(fs === 'xfs' ? [] : ['-f']), '-c', command, mountPoint], tc);
}

/** Is project quota accounting and enforcement on for this mount? */
export async function projectQuotaOn(fs: ProjectQuotaFs, mountPoint: string, tc: ToolContext = {}): Promise<boolean> {
  try {
    const { stdout } = await xq(fs, mountPoint, 'state -p', tc);
    return /Accounting: ON/.test(stdout) && /Enforcement: ON/.test(stdout);
  } catch {
    return false;
  }
}

/** Tag a directory tree with a project id (inherited by everything created below it). */
export async function setProject(fs: ProjectQuotaFs, mountPoint: string, dir: string, projectId: number, tc: ToolContext = {}): Promise<void> {
  await xq(fs, mountPoint, `project -s -p ${dir} ${projectId}`, tc);
}

export async function setProjectLimit(fs: ProjectQuotaFs, mountPoint: string, projectId: number, hardBytes: bigint, tc: ToolContext = {}): Promise<void> {
  await xq(fs, mountPoint, `limit -p bhard=${hardBytes} ${projectId}`, tc);
}

/** Usage of every project the filesystem knows, from one `report` (bytes, with the hard limit, and inodes). */
export async function projectReport(fs: ProjectQuotaFs, mountPoint: string, tc: ToolContext = {}): Promise<Map<number, ProjectUsage>> {
  const { stdout } = await xq(fs, mountPoint, 'report -p -b -i -N -n', tc);
  return parseProjectReport(stdout);
}

export function parseProjectReport(text: string): Map<number, ProjectUsage> {
  const out = new Map<number, ProjectUsage>();
  // "#1001   10240   0   10240   00 [--------]   1   0   0   00 [--------]"
  for (const line of text.split('\n')) {
    const m = /^#(\d+)\s+(\d+)\s+\d+\s+(\d+)\s+\S+\s+\[[^\]]*\]\s+(\d+)/.exec(line.trim());
    if (!m) continue;
    out.set(Number(m[1]), { usedBytes: BigInt(m[2]!) * 1024n, hardBytes: BigInt(m[3]!) * 1024n, usedInodes: BigInt(m[4]!) });
  }
  return out;
}
