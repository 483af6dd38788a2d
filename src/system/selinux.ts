import { statfsSync } from 'node:fs';
import { run, type ToolContext } from './exec.js';

const SELINUX_MAGIC = 0xf97cff8cn;
const SELINUXFS = '/sys/fs/selinux';

/**
 * What a volume is labelled with on a host that runs SELinux: the type every container may use
 * (`container_file_t`, as `chcon -t container_file_t` does for HPP's pools), at level s0, which every
 * container's categories dominate. kubelet narrows it to the pod's categories itself where the pod
 * asks for that (`seLinuxOptions`, or the SELinuxMount mount option).
 */
export const CONTAINER_FILE_CONTEXT = 'system_u:object_r:container_file_t:s0';

/** SELinux is on when selinuxfs is mounted (enforcing or permissive: labels matter in both). */
export function selinuxEnabled(root = SELINUXFS): boolean {
  try {
    return statfsSync(root, { bigint: true }).type === SELINUX_MAGIC;
  } catch {
    return false;
  }
}

/** Labels a volume (a directory with all it holds, or an image file) for containers. */
export async function labelForContainers(target: string, context = CONTAINER_FILE_CONTEXT, tc: ToolContext = {}): Promise<void> {
  await run('chcon', ['-R', '--no-dereference', context, target], { ...tc, timeoutMs: 10 * 60_000 });
}
