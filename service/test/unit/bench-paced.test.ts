import { describe, expect, it } from 'vitest';
import { measurePaced } from '../../../bench/inbox.js';

describe('the inbox bench\'s paced open loop', () => {
  it('a request that never answers fails its slice instead of hanging the run', async () => {
    let calls = 0;
    const t0 = performance.now();
    const { api, sql } = await measurePaced({
      // The first request hangs; the rest answer at once.
      api: () => (calls++ === 0 ? new Promise<boolean>(() => {}) : Promise.resolve(true)),
      sql: async () => true,
    }, 1);
    expect(performance.now() - t0).toBeLessThan(15_000);
    expect(api.errors).toBe(1);
    expect(api.requests).toBe(calls - 1);
    expect(sql.errors).toBe(0);
  }, 20_000);
});
