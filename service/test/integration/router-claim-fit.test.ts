// How much a claim takes of an area's queue. A receiver slower than the run window: a run
// delivers a few events before the window ends it, and the rest of the queue waits for the next
// claim. Each claim must take about what the area gets through, not a full run whose undelivered
// rest is read, built and claimed again every round (the claim's rows per delivered event is what
// a busy worker pays in Postgres); once the receiver keeps up again, runs grow back; and while
// the area is failing, a claim takes only the head that is retried.
import { expect, it } from 'vitest';
import type { Pool } from '../../src/store/pool.js';
import { eventually } from '../helpers/app.js';
import { forwardingKit } from '../helpers/forwarding.js';

const EVENTS = 60;
let received: number[] = [];
/** How the receiver answers, by how many events it has taken so far. */
let answer: (taken: number) => { ms: number; status: number } = () => ({ ms: 40, status: 200 });
const kit = forwardingKit((data, res) => {
  const { ms, status } = answer(received.length);
  setTimeout(() => {
    if (status === 200) received.push(data.n as number);
    res.statusCode = status;
    res.end('ok');
  }, ms);
});

/**
 * Delivers `events` of one conversation through a forwarder whose claims are counted: the rows of
 * each claim that took any, in order.
 */
async function deliverAll(name: string, events: number): Promise<number[]> {
  received = [];
  const areaId = await kit.area(name);
  const { db } = kit;
  await db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data, sort_at, created_at)
     SELECT $1, 1, 'conversation.assigned', jsonb_build_object('n', i), now() - interval '1 minute' + i * interval '1 ms', now() - interval '1 minute' FROM generate_series(1, $2::int) i`,
    [areaId, events],
  );
  // The real pool, with the rows of each claim counted.
  const claims: number[] = [];
  const query = db.pool.query.bind(db.pool) as (...args: unknown[]) => Promise<{ rows: { tried?: boolean }[] }>;
  const pool = Object.assign(Object.create(db.pool) as Pool, {
    query: async (...args: unknown[]) => {
      const r = await query(...args);
      // The claim's statements lease and return the runs (its 'leased' step); a head left for
      // the second statement (tried) is not claimed yet. Given as text or as a statement config.
      const text = typeof args[0] === 'string' ? args[0] : String((args[0] as { text?: string }).text);
      const taken = /\bleased AS \(/.test(text) ? r.rows.filter((x) => x.tried !== true).length : 0;
      if (taken > 0) claims.push(taken);
      return r;
    },
  });
  const worker = kit.worker({ pool, schedule: [0.05, 0.05, 0.05, 0.05, 0.05], concurrency: 10, runLength: 50, runWindowMs: 150, pollMs: 20, leaseMs: 30_000, settleMs: 0 });
  worker.forwarder.start();
  try {
    await eventually(async () => (received.length >= events ? true : null), { what: 'every event delivered', timeoutMs: 60_000 });
  } finally {
    await worker.stop();
  }
  expect(received).toEqual(Array.from({ length: events }, (_, i) => i + 1));
  // Every delivered event was claimed: a claim statement this counter no longer recognizes would
  // leave the checks below judging an empty list.
  expect(claims.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(events);
  return claims;
}

it('a claim takes what the area gets through in a run window, not a full run claimed again and again', async () => {
  // 40 ms per answer: about 4 events of a run fit in its 150 ms window.
  answer = () => ({ ms: 40, status: 200 });
  const claims = await deliverAll('Slow', EVENTS);
  // A full run claimed each round is ~8.6 claimed per delivered event here. Fitted runs stay near
  // 1.5 on a quiet machine; on a loaded one a window may fit a single event (2 claimed for 1) after
  // the first full claim, hence the margin.
  expect(claims.reduce((a, b) => a + b, 0) / EVENTS).toBeLessThan(4);
});

it('runs cut short by a slow spell grow back to full length once the receiver is fast again', async () => {
  // The first 3 answers take 300 ms (a run's window fits one), the rest 2 ms.
  answer = (taken) => ({ ms: taken < 3 ? 300 : 2, status: 200 });
  const claims = await deliverAll('Slow, then fast', 200);
  // Grown back: the slow claims, a few growing ones (2, 6, 18, 50), then full runs of 50: about
  // 10 claims on a quiet machine, 30 seen on a loaded one (its stalls cut runs again). Runs stuck
  // at the slow spell's fit take about 100.
  expect(claims.length).toBeLessThan(60);
});

it('while an area is failing a claim takes only the head of its queue, not a run that would fail with it', async () => {
  // The first 3 answers are 500s, then every event goes.
  let failures = 0;
  answer = () => (failures < 3 ? (failures++, { ms: 2, status: 500 }) : { ms: 2, status: 200 });
  const claims = await deliverAll('Failing, then fine', 20);
  // The first claim takes the whole queue (nothing failed yet) and its head fails; each retry of
  // the head until one goes through is claimed alone.
  expect(claims[0]).toBe(20);
  expect(claims.slice(1, 4)).toEqual([1, 1, 1]);
});
