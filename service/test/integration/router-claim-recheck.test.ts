// The claim's lock step compares the row's status with the status the head was picked in (a
// column of the materialized CTE), not with 'pending'. A head another worker finished or leased
// after the claim's snapshot and before its lock must still be rejected by the recheck of the
// row's latest version (EvalPlanQual), in both of the claim's statements. The claim is paused between its snapshot and its lock by a session
// now() (search_path puts public before pg_catalog) that sleeps on its first call.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { claimRuns } from '../../src/router/forwarding/outbox.js';
import type { Pool } from '../../src/store/pool.js';
import { createTestDb, type TestDb } from '../helpers/context.js';

let db: TestDb;
let areaId: number;
beforeAll(async () => {
  db = await createTestDb();
  areaId = Number((await db.pool.query<{ id: string }>("INSERT INTO areas (name, webhook_url) VALUES ('A', 'http://127.0.0.1:9/hook') RETURNING id")).rows[0]!.id);
  await db.pool.query(`CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
      IF current_setting('claim_test.slept', true) IS DISTINCT FROM 'y' AND position(current_setting('claim_test.sleep_on') in current_query()) > 0 THEN
        PERFORM set_config('claim_test.slept', 'y', false);
        PERFORM pg_sleep(1.5);
      END IF;
      RETURN pg_catalog.now();
    END $$`);
});
afterAll(async () => db?.drop());

/** A claim paused 1.5 s after its snapshot, while `meanwhile` runs (and commits) after 300 ms. */
async function claimAround(conversationId: number | null, meanwhile: string, second = false): Promise<{ taken: number; after: { status: string; leased: boolean } }> {
  // The second statement's case: a transaction open since before the head was queued leaves its
  // order unsettled, so the first statement only tries its (free) order lock.
  const open = new pg.Client({ connectionString: db.url });
  await open.connect();
  await open.query('BEGIN');
  await open.query('SELECT pg_current_xact_id()');
  if (!second) await open.query('COMMIT');
  const { rows } = await db.pool.query<{ id: string }>(
    "INSERT INTO forward_events (area_id, conversation_id, type, data, created_at) VALUES ($1, $2, 'conversation.assigned', '{}', now() - interval '1 minute') RETURNING id",
    [areaId, conversationId]);
  const id = Number(rows[0]!.id);
  const b = new pg.Client({ connectionString: db.url });
  await b.connect();
  try {
    await b.query("SET search_path = public, pg_catalog");
    await b.query(`SET claim_test.sleep_on = '${second ? 'AS w(area_id, conversation_id)' : 'allowed AS'}'`);
    const claim = claimRuns(b as unknown as Pool, {
      queues: 10, runLength: 5, leaseMs: 30_000, settleMs: 0, maxOrderWaitMs: 600_000,
      skipAreas: [], areaCaps: new Map(), defaultCap: 10, runLengths: new Map(),
    });
    await new Promise((r) => setTimeout(r, 300));
    await db.pool.query(meanwhile, [id]);
    const runs = await claim;
    const { rows: [row] } = await db.pool.query<{ status: string; leased: boolean }>('SELECT status, locked_until > now() AS leased FROM forward_events WHERE id = $1', [id]);
    await db.pool.query("UPDATE forward_events SET status = 'succeeded', locked_until = NULL WHERE id = $1", [id]);
    return { taken: runs.length, after: { status: row!.status, leased: row!.leased ?? false } };
  } finally {
    await b.end();
    await open.end();
  }
}

for (const [conv, second] of [[null, false], [7, false], [8, true]] as const) {
  it(`conversation ${String(conv)}${second ? ' (second statement)' : ''}: a head changed without its status after the snapshot is taken (the pause is between snapshot and lock)`, async () => {
    const r = await claimAround(conv, 'UPDATE forward_events SET attempts = attempts + 1 WHERE id = $1', second);
    expect(r.taken).toBe(1);
  });
  it(`conversation ${String(conv)}${second ? ' (second statement)' : ''}: a head delivered by another worker after the snapshot is not taken`, async () => {
    const r = await claimAround(conv, "UPDATE forward_events SET status = 'succeeded', finished_at = now() WHERE id = $1", second);
    expect(r).toEqual({ taken: 0, after: { status: 'succeeded', leased: false } });
  });
  it(`conversation ${String(conv)}${second ? ' (second statement)' : ''}: a head leased by another worker after the snapshot is not taken`, async () => {
    const r = await claimAround(conv, "UPDATE forward_events SET locked_until = now() + interval '30 seconds' WHERE id = $1", second);
    expect(r).toEqual({ taken: 0, after: { status: 'pending', leased: true } });
  });
  it(`conversation ${String(conv)}${second ? ' (second statement)' : ''}: a head dead-lettered after the snapshot is not taken`, async () => {
    const r = await claimAround(conv, "UPDATE forward_events SET status = 'dead', finished_at = now() WHERE id = $1", second);
    expect(r).toEqual({ taken: 0, after: { status: 'dead', leased: false } });
  });
}
