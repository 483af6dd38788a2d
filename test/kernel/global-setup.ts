import { execFileSync } from 'node:child_process';

/** The modules the tier's tests use, loaded once from the fetched kernel's tree (the guest loads none by itself). */
export default function setup(): void {
  if (process.env.HPP_KERNEL_VM !== '1') return;
  for (const m of ['loop', 'xfs', 'ext4', 'quota_v2', 'btrfs']) execFileSync('modprobe', [m]);
}
