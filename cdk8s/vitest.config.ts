import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The CLI tests spawn tsx/cdk8s processes; on a loaded 2-core machine one takes 5-10 s.
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
