import { describe, expect, it } from 'vitest';
import { WriteCoalescer } from '../../src/store/coalescer.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('WriteCoalescer', () => {
  it('merges requests that arrive while a write runs', async () => {
    const writes: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const c = new WriteCoalescer<number, number>({
      parallel: 1,
      splitOn: () => true,
      write: async (items) => {
        writes.push(items);
        if (writes.length === 1) await gate;
        return items.length;
      },
    });
    const first = c.submit([1]);
    await tick();
    const rest = [c.submit([2]), c.submit([3, 4]), c.submit([5])];
    release();
    expect(await first).toBe(1);
    expect(await Promise.all(rest)).toEqual([4, 4, 4]);
    expect(writes).toEqual([[1], [2, 3, 4, 5]]);
  });

  it('on a refused merged write, retries each request alone so only the culprit fails', async () => {
    const c = new WriteCoalescer<string, string>({
      parallel: 1,
      splitOn: (err) => (err as Error).message === 'bad row',
      write: async (items) => {
        await tick();
        if (items.includes('bad')) throw new Error('bad row');
        return items.join(',');
      },
    });
    const busy = c.submit(['a']);
    const results = await Promise.allSettled([c.submit(['b']), c.submit(['bad']), c.submit(['c'])]);
    await busy;
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[0] as PromiseFulfilledResult<string>).value).toBe('b');
  });

  it('does not split on errors that concern everyone (database down)', async () => {
    let calls = 0;
    const c = new WriteCoalescer<number, void>({
      parallel: 1,
      splitOn: () => false,
      write: async () => {
        calls++;
        await tick();
        throw new Error('connection refused');
      },
    });
    const busy = c.submit([0]).catch(() => undefined);
    const rs = await Promise.allSettled([c.submit([1]), c.submit([2])]);
    await busy;
    expect(rs.every((r) => r.status === 'rejected')).toBe(true);
    expect(calls).toBe(2);
  });
});
