// How much a claim takes of an area's queue. A receiver slower than the run window: a run
// delivers a few events before the window ends, then checks that nothing stored meanwhile sorts
// before its rest and goes on with what it holds. Each event is claimed (read, built) once, not
// with a rest read, built and claimed again every round (the claim's rows per delivered event is
// what a busy worker pays in Postgres); an event stored meanwhile that sorts before the rest ends
// the run at the window and goes first; a run outliving its lease keeps it, and one whose lease ran
// out during an answer (its queue taken by another worker) ends at its next check; and while the area is
// failing, a claim takes only the head that is retried.
import { expect, it } from 'vitest';
import type { Pool, PoolClient } from '../../src/store/pool.js';
import { eventually } from '../helpers/app.js';
import { forwardingKit } from '../helpers/forwarding.js';

/** The events' sort times start here, 1 ms apart. */
const T0 = '2026-01-01T00:00:00Z';
/** The area of the current deliverAll. */
let area = 0;
let received: number[] = [];
/** How the receiver answers, by how many events it has taken so far. */
let answer: (taken: number) => { ms: number; status: number } = () => ({ ms: 40, status: 200 });
/** Runs before the answer to each request, by how many events the receiver has taken so far. */
let before: (taken: number) => Promise<void> = async () => undefined;
const kit = forwardingKit((data, res) => {
  const { ms, status } = answer(received.length);
  void before(received.length).then(() => setTimeout(() => {
    if (status === 200) received.push(data.n as number);
    res.statusCode = status;
    res.end('ok');
  }, ms));
});

/**
 * Delivers `events` of one conversation through a forwarder whose claims are counted: the rows of
 * each claim that took any, in order.
 */
async function deliverAll(
  name: string,
  events: number,
  o: {
    expect?: number[];
    workers?: number;
    leaseMs?: number;
    runWindowMs?: number;
    check?: (received: number[]) => void;
    /** Runs after each statement of the first worker, before it sees the result. */
    afterQuery?: (text: string) => Promise<void>;
  } = {},
): Promise<number[]> {
  received = [];
  const areaId = await kit.area(name);
  const { db } = kit;
  area = areaId;
  await db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data, sort_at, created_at)
     SELECT $1, 1, 'conversation.assigned', jsonb_build_object('n', i), $3::timestamptz + i * interval '1 ms', now() - interval '1 minute' FROM generate_series(1, $2::int) i`,
    [areaId, events, T0],
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
      await o.afterQuery?.(text);
      return r;
    },
  });
  const settings = { schedule: [0.05, 0.05, 0.05, 0.05, 0.05], concurrency: 10, runLength: 50, runWindowMs: o.runWindowMs ?? 150, pollMs: 20, leaseMs: o.leaseMs ?? 30_000, settleMs: 0 };
  // The first worker's claims are counted; the others (their own pool) only compete for the queue.
  const workers = [kit.worker({ ...settings, pool }), ...Array.from({ length: (o.workers ?? 1) - 1 }, () => kit.worker(settings))];
  workers[0]!.forwarder.start();
  // The others once the first has taken the queue (and is delivering it).
  let stopped = false;
  void eventually(async () => (received.length > 0 || stopped ? true : null), { what: 'a first delivery', timeoutMs: 60_000 }).then(() => {
    if (!stopped) for (const w of workers.slice(1)) w.forwarder.start();
  }, () => undefined);
  const expected = o.expect ?? Array.from({ length: events }, (_, i) => i + 1);
  try {
    await eventually(async () => (expected.every((n) => received.includes(n)) ? true : null), { what: 'every event delivered', timeoutMs: 60_000 });
    // Nothing more comes (a duplicate would, a moment later).
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    stopped = true;
    for (const w of workers) await w.stop();
  }
  if (o.check) o.check(received);
  else expect(received).toEqual(expected);
  // Every delivered event was claimed: a claim statement this counter no longer recognizes would
  // leave the checks below judging an empty list.
  expect(claims.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(events);
  return claims;
}

it('a run past its window goes on with the events it holds: each event is claimed once, not read and built again', async () => {
  // 40 ms per answer: about 4 events of a run fit in its 150 ms window, 50 take 2 s.
  answer = () => ({ ms: 40, status: 200 });
  before = async () => undefined;
  const claims = await deliverAll('Slow', 100);
  // Runs ended at each window were ~8.6 claimed per delivered event here, fitted to the window
  // about 1.5: now each event is claimed once.
  expect(claims.reduce((a, b) => a + b, 0)).toBe(100);
  expect(claims.length).toBeGreaterThanOrEqual(4);
  // After the first, runs are sized to two windows at the receiver's pace (about 8 events), so an
  // area's slots still pass from queue to queue: not another run of 50 holding one for 2 s.
  expect(claims[0]).toBe(50);
  expect(Math.max(...claims.slice(1))).toBeLessThanOrEqual(16);
});

it('runs sized to a slow spell grow back to full length once the receiver is fast again', async () => {
  // The first 3 answers take 1.2 s (each past a 1 s window: one event per window), the rest 2 ms
  // (a run of 50 well within a window, even on a loaded machine).
  answer = (taken) => ({ ms: taken < 3 ? 1_200 : 2, status: 200 });
  before = async () => undefined;
  const claims = await deliverAll('Slow, then fast', 200, { runWindowMs: 1_000 });
  // Each event claimed once; runs sized to the slow spell's pace grow back to full runs: the
  // first run, a few growing ones (2, 4, 8, 16, 32), then runs of 50 (a loaded machine's stall
  // may size one down again; runs stuck at the slow pace would take about 100 claims).
  expect(claims.reduce((a, b) => a + b, 0)).toBe(200);
  expect(claims.length).toBeLessThan(15);
  expect(Math.max(...claims.slice(1))).toBeGreaterThanOrEqual(32);
});

it('an event stored during a run that sorts before its rest ends the run at the window and goes before the rest', async () => {
  answer = () => ({ ms: 40, status: 200 });
  // At the second request, an event that sorts between the 10th and the 11th (an older message
  // stored late): the run checks at its next window (about the 4th event) and ends, and the next
  // claim takes the queue from where it stopped, in order.
  before = async (taken) => {
    if (taken !== 1) return;
    before = async () => undefined;
    await kit.db.pool.query(
      `INSERT INTO forward_events (area_id, conversation_id, type, data, sort_at, created_at)
       VALUES ($1, 1, 'conversation.assigned', '{"n": 100}', $2::timestamptz + interval '10500 microseconds', now() - interval '1 minute')`,
      [area, T0],
    );
  };
  const expected = [...Array.from({ length: 10 }, (_, i) => i + 1), 100, ...Array.from({ length: 10 }, (_, i) => i + 11)];
  const claims = await deliverAll('Late older message', 20, { expect: expected });
  // The first run ended at its check: what it had not delivered is claimed again, once.
  expect(claims[0]).toBe(20);
  expect(claims.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(21 + 20);
});

it('a store still open in the conversation at a check ends the run there: an earlier event it commits goes before the rest', async () => {
  answer = () => ({ ms: 40, status: 200 });
  // At the second request a store opens (its order lock held until it commits) and queues an
  // event that sorts between the 4th and the 5th; it commits right after the run's first check
  // (after the 3rd or 4th event, 2nd on a slow machine), before the run goes on. The check must not take the store's silence
  // for nothing to come: its snapshot cannot see the event. It tries the conversation's order
  // lock, finds it held and ends the run; the next claim, after the commit, takes the event in
  // its place. A check that did not try went on and delivered the 5th (at least three events:
  // a window) before its next check saw the event.
  let store: PoolClient | undefined;
  before = async (taken) => {
    if (taken !== 1) return;
    before = async () => undefined;
    store = await kit.db.pool.connect();
    await store.query('BEGIN');
    await store.query(
      `INSERT INTO forward_events (area_id, conversation_id, type, data, sort_at, created_at)
       VALUES ($1, 1, 'conversation.assigned', '{"n": 100}', $2::timestamptz + interval '4500 microseconds', now() - interval '1 minute')`,
      [area, T0],
    );
  };
  // The first check's first statement: the order lock's try (or a check without it).
  const afterQuery = async (text: string) => {
    if (!store || received.length < 2 || /\bleased AS \(/.test(text) || !/pg_try_advisory_xact_lock|last\.sort_at/.test(text)) return;
    const s = store;
    store = undefined;
    await s.query('COMMIT');
    s.release();
  };
  const expected = [...Array.from({ length: 4 }, (_, i) => i + 1), 100, ...Array.from({ length: 16 }, (_, i) => i + 5)];
  await deliverAll('Store open at a check', 20, { expect: expected, afterQuery });
});

it('a run that outlives its lease renews it: another worker never takes the queue from under it', async () => {
  // 50 events at 40 ms: a 2 s run with a 1 s lease, checked (and renewed) every 300 ms, while a
  // second worker polls the queue every 20 ms.
  answer = () => ({ ms: 40, status: 200 });
  before = async () => undefined;
  const claims = await deliverAll('Long run', 50, { workers: 2, leaseMs: 1_000, runWindowMs: 300 });
  expect(claims).toEqual([50]);
});

it('while an area is failing a claim takes only the head of its queue, not a run that would fail with it', async () => {
  // The first 3 answers are 500s, then every event goes.
  let failures = 0;
  before = async () => undefined;
  answer = () => (failures < 3 ? (failures++, { ms: 2, status: 500 }) : { ms: 2, status: 200 });
  const claims = await deliverAll('Failing, then fine', 20);
  // The first claim takes the whole queue (nothing failed yet) and its head fails; each retry of
  // the head until one goes through is claimed alone.
  expect(claims[0]).toBe(20);
  expect(claims.slice(1, 4)).toEqual([1, 1, 1]);
});

it('a run whose lease ran out during one answer ends at its next check: it never goes on beside the worker that took its queue', async () => {
  // Lease 1 s, window 300 ms, answers 40 ms: the run's check before its 9th event (~320 ms)
  // renews the lease to ~1.32 s; the 9th answer takes 1.1 s (longer than the lease: in production
  // the lease exceeds the delivery timeout, but a worker may stall as long). The lease ends during
  // it and the second worker (polling every 20 ms) takes the queue from its head: events 1-8,
  // delivered but not recorded yet, go again (at least once). The first run's next check finds
  // another lease on its head and ends; what it delivered is recorded, and the second worker's
  // run ends at its own check (its head is delivered), before its 9th event. Events 10 on go
  // once, in order. A check that only asked "head pending and leased" went on: both workers
  // delivered the whole conversation, interleaved.
  // Only that answer: the second worker's first request comes while the receiver has still taken 8.
  let slow = true;
  answer = (taken) => ({ ms: taken === 8 && slow ? ((slow = false), 1_100) : 40, status: 200 });
  before = async () => undefined;
  await deliverAll('Lease lost mid-run', 30, {
    workers: 2, leaseMs: 1_000, runWindowMs: 300,
    check: (got) => {
      // The slow answer did outlive the lease: the queue was taken again from its head.
      expect(got.filter((n) => n === 1).length, got.join(',')).toBe(2);
      for (let n = 1; n <= 9; n++) expect(got.filter((x) => x === n).length, got.join(',')).toBeLessThanOrEqual(2);
      expect(got.filter((n) => n >= 10), got.join(',')).toEqual(Array.from({ length: 21 }, (_, i) => i + 10));
    },
  });
});
