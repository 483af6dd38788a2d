import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Those need Debian's stock kernel in a VM: vitest.kernel.config.ts, `npm run test:kernel`.
    exclude: [...configDefaults.exclude, 'test/kernel/**'],
    // Integration tests mount and attach real devices: keep parallelism modest (2 cores).
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 60_000,
    // The JSON report feeds the one-line summary .ci/run prints at the end.
    reporters: ['default', ['json', { outputFile: 'test-results/vitest.json' }]],
    hookTimeout: 60_000,
  },
});
