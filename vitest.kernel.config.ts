import { defineConfig } from 'vitest/config';

// The kernel tier: tests that need Debian's stock kernel (XFS and ext4 quotas, SELinux), run inside
// the VM by `npm run test:kernel` (hack/kernel-vm/run). Everything is slower there (TCG: node starts
// in about 1.7 s, file-heavy syscalls cost about 11x), hence one or two forks and long timeouts.
export default defineConfig({
  test: {
    include: ['test/kernel/**/*.test.ts'],
    globalSetup: ['test/kernel/global-setup.ts'],
    env: { HPP_TEST_START_MS: '120000', FAULT_PER_KILL_MS: '30000' },
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 180_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    reporters: ['default', ['json', { outputFile: 'test-results/vitest-kernel.json' }]],
  },
});
