import { run } from './exec.js';

/** Format with reflink (O(1) snapshots and clones). mkfs.xfs itself refuses a device holding a filesystem (no -f). */
export async function mkfsXfs(device: string): Promise<void> {
  await run('mkfs.xfs', ['-q', '-m', 'reflink=1', device], { timeoutMs: 10 * 60_000 });
}

export interface XfsProjectUsage {
  usedBytes: bigint;
  hardBytes: bigint;
  usedInodes: bigint;
}

function xq(mountPoint: string, command: string) {
  return run('xfs_quota', ['-x', '-c', command, mountPoint]);
}

/** Is project quota accounting and enforcement on for this XFS mount? */
export async function xfsProjectQuotaOn(mountPoint: string): Promise<boolean> {
  try {
    const { stdout } = await xq(mountPoint, 'state -p');
    return /Accounting: ON/.test(stdout) && /Enforcement: ON/.test(stdout);
  } catch {
    return false;
  }
}

/** Tag a directory tree with a project id (inherited by everything created below it). */
export async function xfsSetProject(mountPoint: string, dir: string, projectId: number): Promise<void> {
  await xq(mountPoint, `project -s -p ${dir} ${projectId}`);
}

export async function xfsSetLimit(mountPoint: string, projectId: number, hardBytes: bigint): Promise<void> {
  await xq(mountPoint, `limit -p bhard=${hardBytes} ${projectId}`);
}

/** Usage of every project, from one `report` (bytes, with the hard limit, and inodes). */
export async function xfsProjectReport(mountPoint: string): Promise<Map<number, XfsProjectUsage>> {
  const { stdout } = await xq(mountPoint, 'report -p -b -i -N -n');
  const out = new Map<number, XfsProjectUsage>();
  // "#1001   10240   0   10240   00 [--------]   1   0   0   00 [--------]"
  for (const line of stdout.split('\n')) {
    const m = /^#(\d+)\s+(\d+)\s+\d+\s+(\d+)\s+\S+\s+\[[^\]]*\]\s+(\d+)/.exec(line.trim());
    if (!m) continue;
    out.set(Number(m[1]), { usedBytes: BigInt(m[2]!) * 1024n, hardBytes: BigInt(m[3]!) * 1024n, usedInodes: BigInt(m[4]!) });
  }
  return out;
}
