import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration files share one Postgres and one Redis; each gets its own database and key prefix.
    fileParallelism: true,
    maxWorkers: 2,
    pool: 'forks',
  },
});
