// The forwarding outbox under the races a running router meets: an area disabled or deleted
// while its events are queued or delivered, and a worker whose lease ran out recording late.
// Driven statement by statement against the real Postgres, with what the area's receiver and
// the deliveries list would see checked at the end.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { backlog, claimRuns, disableArea, recordOutcomes, release, type Outcome } from '../../src/router/forwarding/outbox.js';
import { assignConversation } from '../../src/router/routing/assignments.js';
import { createTestDb, type TestDb } from '../helpers/context.js';
import { eventually } from '../helpers/app.js';

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});
afterAll(async () => {
  await db?.drop();
});

let n = 0;
async function conversation(): Promise<number> {
  n++;
  const ch = await db.pool.query<{ id: number }>('INSERT INTO channels (phone_number_id) VALUES ($1) RETURNING id', [`race-${n}-${Date.now()}`]);
  const ct = await db.pool.query<{ id: number }>('INSERT INTO contacts (wa_id) VALUES ($1) RETURNING id', [`55119${Date.now()}${n}`]);
  const cv = await db.pool.query<{ id: number }>('INSERT INTO conversations (channel_id, contact_id) VALUES ($1, $2) RETURNING id', [ch.rows[0]!.id, ct.rows[0]!.id]);
  return Number(cv.rows[0]!.id);
}
async function area(name: string): Promise<number> {
  const { rows } = await db.pool.query<{ id: string }>("INSERT INTO areas (name, webhook_url) VALUES ($1, 'http://127.0.0.1:9/x') RETURNING id", [name]);
  return Number(rows[0]!.id);
}
async function queued(areaId: number, conv: number): Promise<number> {
  const { rows } = await db.pool.query<{ id: string }>(
    "INSERT INTO forward_events (area_id, conversation_id, type, data, created_at) VALUES ($1, $2, 'conversation.assigned', '{}', now() - interval '1 minute') RETURNING id",
    [areaId, conv],
  );
  return Number(rows[0]!.id);
}
const outcome = (id: number, areaId: number, status: Outcome['status'], statusCode: number): Outcome => ({
  id, areaId, body: status === 'succeeded' ? null : '{}', status, nextAttemptAt: new Date(Date.now() - 1000), statusCode, latencyMs: 1, error: null, response: null,
});
const statusOf = async (id: number) => (await db.pool.query<{ status: string }>('SELECT status FROM forward_events WHERE id = $1', [id])).rows[0]?.status;
// A statement of another connection is waiting for a row lock (so the interleaving is the one meant).
const waitingForLock = () => eventually(async () => {
  const { rows } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
  return rows[0]!.n > 0 ? true : null;
}, { what: 'a statement waiting for a lock' });

it('an event queued while its area is being disabled is dead-lettered, not left pending forever', async () => {
  const conv = await conversation();
  const areaId = await area('Disabled during an assignment');
  const c = await db.pool.connect();
  let disabling: Promise<{ deadLettered: number } | null> | undefined;
  try {
    // The assignment's transaction queued conversation.assigned; the 410 (or PATCH enabled:false)
    // that disables the area meanwhile waits for it, then dead-letters what it queued.
    await c.query('BEGIN');
    await assignConversation(db.pool, conv, areaId, 'api', c);
    disabling = disableArea(db.pool, areaId, 'the webhook answered 410 Gone');
    await waitingForLock();
    await c.query('COMMIT');
  } finally {
    c.release();
  }
  expect(await disabling).toEqual({ deadLettered: 1 });
  const { rows } = await db.pool.query<{ status: string; last_error: string }>('SELECT status, last_error FROM forward_events WHERE area_id = $1', [areaId]);
  expect(rows).toEqual([{ status: 'dead', last_error: 'area disabled: the webhook answered 410 Gone' }]);
});

it('a customer message stored while its area is being disabled queues nothing for the disabled area', async () => {
  const conv = await conversation();
  const areaId = await area('Disabled before a message');
  await assignConversation(db.pool, conv, areaId, 'api');
  const c = await db.pool.connect();
  let storing: Promise<unknown> | undefined;
  try {
    await c.query('BEGIN');
    await disableArea(db.pool, areaId, 'disabled by the API', c);
    // The ingest stores the customer's message meanwhile: its forwarding trigger waits for the disable.
    storing = db.pool.query(
      `INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, type, body, raw, wa_timestamp, status)
       SELECT $2, cv.channel_id, cv.id, cv.contact_id, 'inbound', 'text', 'hello', '{}', now(), 'received' FROM conversations cv WHERE cv.id = $1`,
      [conv, `wamid.RACE${Date.now()}`],
    );
    await waitingForLock();
    await c.query('COMMIT');
  } finally {
    c.release();
  }
  await storing;
  const { rows } = await db.pool.query<{ type: string; status: string }>('SELECT type, status FROM forward_events WHERE area_id = $1 ORDER BY id', [areaId]);
  expect(rows).toEqual([{ type: 'conversation.assigned', status: 'dead' }]);
});

it('a late failed outcome of an event never turns a delivered event back into pending', async () => {
  const conv = await conversation();
  const areaId = await area('Late outcome');
  const id = await queued(areaId, conv);
  // Worker B (after A's lease ran out) delivered it and recorded success; worker A's failure of the
  // same event is recorded afterwards.
  await recordOutcomes(db.pool, [outcome(id, areaId, 'succeeded', 200)]);
  await recordOutcomes(db.pool, [outcome(id, areaId, 'pending', 500)]);
  expect(await statusOf(id)).toBe('succeeded');
  const claimed = await claimRuns(db.pool, { queues: 10, runLength: 5, leaseMs: 30_000, settleMs: 0, maxOrderWaitMs: 10_000, skipAreas: [], areaCaps: new Map(), defaultCap: 10, runLengths: new Map() });
  expect(claimed.flat().map((e) => e.id)).not.toContain(id);
  // Both attempts stay in the deliveries list.
  const { rows } = await db.pool.query<{ status_code: number }>('SELECT status_code FROM forward_attempts WHERE event_id = $1 ORDER BY id', [id]);
  expect(rows.map((r) => r.status_code)).toEqual([200, 500]);
});

it("an area deleted while one of its runs is in delivery does not void the other areas' recorded outcomes", async () => {
  const conv = await conversation();
  const kept = await area('Kept');
  const deleted = await area('Deleted meanwhile');
  const keptEvent = await queued(kept, conv);
  const goneEvent = await queued(deleted, conv);
  // Both were claimed and delivered by one worker; DELETE /v1/areas/:id commits before the
  // worker's outcome batch (the area's events cascade away).
  await db.pool.query('DELETE FROM areas WHERE id = $1', [deleted]);
  await recordOutcomes(db.pool, [outcome(keptEvent, kept, 'succeeded', 200), outcome(goneEvent, deleted, 'succeeded', 200)]);
  expect(await statusOf(keptEvent)).toBe('succeeded');
  const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM forward_attempts WHERE event_id = $1', [keptEvent]);
  expect(rows[0]!.n).toBe(1);
});

it('an area deleted while an assignment queues an event for it takes that event and the attempts of its others with it', async () => {
  const doomed = await area('Deleted during an assignment');
  const earlier = await queued(doomed, await conversation());
  await recordOutcomes(db.pool, [outcome(earlier, doomed, 'pending', 500)]);
  const c = await db.pool.connect();
  try {
    // The assignment's transaction queued conversation.assigned, holding the area FOR KEY SHARE;
    // DELETE /v1/areas/:id waits for it, then must find the event it committed.
    await c.query('BEGIN');
    await assignConversation(db.pool, await conversation(), doomed, 'api', c);
    const deleting = db.pool.query('DELETE FROM areas WHERE id = $1', [doomed]);
    await waitingForLock();
    await c.query('COMMIT');
    await deleting;
  } finally {
    c.release();
  }
  const left = await db.pool.query<{ events: number; attempts: number }>(
    'SELECT (SELECT count(*)::int FROM forward_events WHERE area_id = $1) AS events, (SELECT count(*)::int FROM forward_attempts WHERE area_id = $1) AS attempts',
    [doomed],
  );
  expect(left.rows[0]).toEqual({ events: 0, attempts: 0 });
});

it('a claim leaves the backlog of an area whose receiver is down alone: its work does not grow with that backlog', async () => {
  const conv = await conversation();
  const up = await area('Up next to a down one');
  const down = await area('Down with a backlog');
  const upEvents = [await queued(up, conv), await queued(up, conv)];
  // The down area's backlog: 400 conversations waiting (their ids need no rows of their own).
  await db.pool.query(
    "INSERT INTO forward_events (area_id, conversation_id, type, data, created_at) SELECT $1, 1000000 + c, 'conversation.assigned', '{}', now() - interval '1 minute' FROM generate_series(1, 400) c, generate_series(1, 3)",
    [down],
  );
  // Planned on the table's statistics, as autovacuum keeps them in production.
  await db.pool.query('ANALYZE forward_events');
  // One connection: the scans it made, read before and after the claim (the backend's counts
  // may still hold earlier transactions' scans, not yet flushed).
  const c = await db.pool.connect();
  const scans = async (): Promise<{ idx: number; seq: number }> => {
    const { rows } = await c.query<{ idx: string; seq: string }>("SELECT idx_scan AS idx, seq_scan AS seq FROM pg_stat_xact_user_tables WHERE relname = 'forward_events'");
    return { idx: Number(rows[0]!.idx), seq: Number(rows[0]!.seq) };
  };
  try {
    await c.query('BEGIN');
    const before = await scans();
    const runs = await claimRuns(c as never, { queues: 10, runLength: 5, leaseMs: 30_000, settleMs: 0, maxOrderWaitMs: 10_000, skipAreas: [down], areaCaps: new Map(), defaultCap: 10, runLengths: new Map() });
    const after = await scans();
    await c.query('ROLLBACK');
    expect(runs.map((r) => r.map((e) => e.id))).toEqual([upEvents]);
    // A probe per queue of the areas it may take, a few for the run and the lease: not one per
    // waiting queue, and never a read of the whole table (which costs no index scan at all).
    expect(after.idx - before.idx).toBeLessThan(100);
    expect(after.seq - before.seq).toBe(0);
  } finally {
    c.release();
  }
  await db.pool.query('DELETE FROM areas WHERE id = ANY ($1::bigint[])', [[up, down]]);
});

it('a run stops before an event queued while an earlier one was still being stored, and waits for it at most the bound', async () => {
  const conv = await conversation();
  const areaId = await area('Stored out of commit order');
  // Queued now (the settle time is 0 here), in the conversation's order by sort_at.
  const queue = async (q: Pick<typeof db.pool, 'query'>, n: number) => Number((await q.query<{ id: string }>(
    "INSERT INTO forward_events (area_id, conversation_id, type, data, sort_at) VALUES ($1, $2, 'conversation.assigned', jsonb_build_object('n', $3::int), now() + $3::int * interval '1 second') RETURNING id",
    [areaId, conv, n],
  )).rows[0]!.id);
  const claim = async (maxOrderWaitMs: number) => (await claimRuns(db.pool, { queues: 10, runLength: 5, leaseMs: 30_000, settleMs: 0, maxOrderWaitMs, skipAreas: [], areaCaps: new Map(), defaultCap: 10, runLengths: new Map() }))
    .filter((r) => r[0]!.areaId === areaId).map((r) => r.map((e) => e.id));
  // Write transactions of other databases of the cluster hold claims back too, for a moment.
  const claimed = (what: string) => eventually(async () => {
    const runs = await claim(10_000);
    return runs.length > 0 ? runs : null;
  }, { what });
  const first = await queue(db.pool, 1);
  const storing = await db.pool.connect();
  try {
    await storing.query('BEGIN');
    const second = await queue(storing, 2);
    const third = await queue(db.pool, 3);
    // The first left before the storing transaction began; the third may still have the second before it.
    expect(await claimed('the first event')).toEqual([[first]]);
    await recordOutcomes(db.pool, [outcome(first, areaId, 'succeeded', 200)]);
    expect(await claim(10_000)).toEqual([]);
    expect((await backlog(db.pool)).find((b) => b.areaId === areaId)).toMatchObject({ pending: 1, waitingOnTransactions: 1 });
    // A transaction left open longer than the bound holds nothing back any more.
    expect(await claim(0)).toEqual([[third]]);
    await release(db.pool, [third]);
    await storing.query('COMMIT');
    expect(await claimed('the second and third events')).toEqual([[second, third]]);
  } finally {
    storing.release();
  }
});

it('a transaction storing into another conversation holds nothing back, while one storing into its own does', async () => {
  const mine = await conversation();
  const other = await conversation();
  const areaId = await area('Not held by other conversations');
  // Queued now (the settle time is 0 here), far from the bound on the wait.
  const queue = async (q: Pick<typeof db.pool, 'query'>, conv: number) => Number((await q.query<{ id: string }>(
    "INSERT INTO forward_events (area_id, conversation_id, type, data) VALUES ($1, $2, 'conversation.assigned', '{}') RETURNING id",
    [areaId, conv],
  )).rows[0]!.id);
  const claim = async () => (await claimRuns(db.pool, { queues: 10, runLength: 5, leaseMs: 30_000, settleMs: 0, maxOrderWaitMs: 60_000, skipAreas: [], areaCaps: new Map(), defaultCap: 10, runLengths: new Map() }))
    .filter((r) => r[0]!.areaId === areaId).map((r) => r.map((e) => e.id));
  const storingOther = await db.pool.connect();
  const storingMine = await db.pool.connect();
  try {
    await storingOther.query('BEGIN');
    await queue(storingOther, other);
    // Queued while the other conversation's store is open (and, below, while one of its own is).
    const first = await queue(db.pool, mine);
    expect(await claim()).toEqual([[first]]);
    expect((await backlog(db.pool)).find((b) => b.areaId === areaId)).toMatchObject({ pending: 1, waitingOnTransactions: 0 });
    await release(db.pool, [first]);
    await storingMine.query('BEGIN');
    const held = await queue(storingMine, mine);
    const second = await queue(db.pool, mine);
    expect(await claim()).toEqual([]);
    expect((await backlog(db.pool)).find((b) => b.areaId === areaId)).toMatchObject({ pending: 2, waitingOnTransactions: 2 });
    await storingMine.query('COMMIT');
    expect(await claim()).toEqual([[first, held, second]]);
  } finally {
    await storingOther.query('ROLLBACK').catch(() => undefined);
    storingOther.release();
    storingMine.release();
  }
});

it('the migrated schema keeps the index by area then conversation, the one index this version and the previous claim through', async () => {
  // Migrations run before the previous version's workers are replaced, and a rollback runs on
  // a newer schema: without this index each claim reads and sorts every pending event. The index
  // by conversation first (010) served only the claims of the versions before 017; 023 drops it.
  const { rows } = await db.pool.query<{ name: string }>(
    "SELECT indexname AS name FROM pg_indexes WHERE tablename = 'forward_events' AND indexname LIKE 'forward_events_pending_%' ORDER BY 1",
  );
  expect(rows.map((r) => r.name)).toEqual(['forward_events_pending_area_conv_idx']);
});
