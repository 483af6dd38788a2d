import { run } from './exec.js';

/** Format with reflink (O(1) snapshots and clones). mkfs.xfs itself refuses a device holding a filesystem (no -f). */
export async function mkfsXfs(device: string): Promise<void> {
  await run('mkfs.xfs', ['-q', '-m', 'reflink=1', device], { timeoutMs: 10 * 60_000 });
}
