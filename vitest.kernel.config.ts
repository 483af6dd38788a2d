import { defineConfig } from 'vitest/config';

// The kernel tier: tests that need Debian's stock kernel (XFS and ext4 quotas, SELinux), run inside
// the VM by `npm run test:kernel` (hack/kernel-vm/run). Everything is slower there (TCG: node starts
// in about 1.7 s, file-heavy syscalls cost about 11x), hence one or two forks and long timeouts.
// Two boots: test/kernel/**/selinux-*.test.ts run in the one with SELinux (run --selinux sets
// HPP_KERNEL_SELINUX=1), everything else in the plain one; each boot its own JSON report.
const selinux = process.env.HPP_KERNEL_SELINUX === '1';

export default defineConfig({
  test: {
    // The kill -9 campaign too, on an XFS pool with project quotas only (FAULT_POOLS=xfs, below).
    include: selinux ? ['test/kernel/**/selinux-*.test.ts'] : ['test/kernel/**/*.test.ts', 'test/faults/kill9.test.ts'],
    exclude: selinux ? [] : ['test/kernel/**/selinux-*.test.ts'],
    globalSetup: ['test/kernel/global-setup.ts'],
    env: { HPP_TEST_START_MS: '120000', FAULT_POOLS: 'xfs', FAULT_KILLS: '4', FAULT_PER_KILL_MS: '30000' },
    // Under SELinux the files take turns: one switching to enforcing must not catch the other mid-step.
    fileParallelism: !selinux,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 180_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    reporters: [
      'default',
      ['json', { outputFile: selinux ? 'test-results/vitest-kernel-selinux.json' : 'test-results/vitest-kernel.json' }],
    ],
  },
});
