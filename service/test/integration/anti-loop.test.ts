// The anti-loop budget is a sliding window: a burst straddling what a fixed window would call
// its boundary still gets no more than the limit. Real Redis.
import { Redis } from 'ioredis';
import { afterAll, expect, inject, it } from 'vitest';
import { LoopGuard } from '../../src/router/routing/anti-loop.js';
import { uniquePrefix } from '../helpers/context.js';

const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.quit());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('allows at most the limit in any window, also across the first window’s end', async () => {
  const guard = new LoopGuard(redis, { prefix: uniquePrefix(), limit: 5, windowMs: 1_000 });
  const take = async (n: number) => {
    let ok = 0;
    for (let i = 0; i < n; i++) if (await guard.take(7)) ok++;
    return ok;
  };
  expect(await take(1)).toBe(1);
  await sleep(800);
  expect(await take(4)).toBe(4);
  await sleep(300);
  // The first one left the window; the four of a moment ago are still in it.
  expect(await take(5)).toBe(1);
  await sleep(1_100);
  expect(await take(6)).toBe(5);
});
