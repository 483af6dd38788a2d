import { run, type ToolContext } from './exec.js';

export async function btrfsCreateSubvolume(path: string, tc: ToolContext = {}): Promise<void> {
  await run('btrfs', ['subvolume', 'create', path], tc);
}

/** Are qgroups (btrfs quotas) enabled on the filesystem holding `path`? */
export async function btrfsQuotaOn(path: string, tc: ToolContext = {}): Promise<boolean> {
  const res = await run('btrfs', ['qgroup', 'show', path], { ...tc, okCodes: [0, 1] });
  return res.code === 0;
}

/** Limit the data a subvolume references; 'none' lifts the limit. */
export async function btrfsSetLimit(path: string, bytes: bigint | 'none', tc: ToolContext = {}): Promise<void> {
  await run('btrfs', ['qgroup', 'limit', bytes === 'none' ? 'none' : bytes.toString(), path], tc);
}

export interface BtrfsUsage {
  referencedBytes: bigint;
  limitBytes: bigint;
}

/** Referenced bytes and limit of the subvolume at `path` (its level-0 qgroup). */
export async function btrfsUsage(path: string, tc: ToolContext = {}): Promise<BtrfsUsage | undefined> {
  const { stdout } = await run('btrfs', ['qgroup', 'show', '-rF', '--raw', path], tc);
  for (const line of stdout.split('\n')) {
    const m = /^0\/\d+\s+(\d+)\s+\d+\s+(\d+|none)/.exec(line.trim());
    if (m) return { referencedBytes: BigInt(m[1]!), limitBytes: m[2] === 'none' ? 0n : BigInt(m[2]!) };
  }
  return undefined;
}

/**
 * Every subvolume's usage from one `qgroup show`, keyed by absolute path. btrfs prints paths relative
 * to the filesystem root, so they are joined to where findmnt says that filesystem is mounted (the pool
 * may sit deeper).
 */
export async function btrfsUsageByPath(poolRoot: string, tc: ToolContext = {}): Promise<Map<string, BtrfsUsage>> {
  const [{ stdout }, top] = await Promise.all([
    run('btrfs', ['qgroup', 'show', '-re', '--raw', poolRoot], tc),
    run('findmnt', ['-n', '-o', 'TARGET', '--target', poolRoot], tc),
  ]);
  const mountPoint = top.stdout.trim();
  const out = new Map<string, BtrfsUsage>();
  for (const line of stdout.split('\n')) {
    const m = /^0\/\d+\s+(\d+)\s+\d+\s+(\d+|none)\s+\S+\s+(.+)$/.exec(line.trim());
    if (!m || m[3]!.startsWith('<')) continue;
    const rel = m[3]!.trim();
    out.set(`${mountPoint === '/' ? '' : mountPoint}/${rel}`, { referencedBytes: BigInt(m[1]!), limitBytes: m[2] === 'none' ? 0n : BigInt(m[2]!) });
  }
  return out;
}
