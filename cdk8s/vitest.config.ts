import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The CLI tests start `npx tsx` and `npx cdk8s` processes: seconds each on a busy machine.
    testTimeout: 60_000,
  },
});
