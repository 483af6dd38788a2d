import { run, type ToolContext } from './exec.js';

/** Format with reflink (O(1) snapshots and clones). mkfs.xfs itself refuses a device holding a filesystem (no -f). */
export async function mkfsXfs(device: string, tc: ToolContext = {}): Promise<void> {
  await run('mkfs.xfs', ['-q', '-m', 'reflink=1', device], { ...tc, timeoutMs: 10 * 60_000 });
}
