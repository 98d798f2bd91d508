// forward_events keeps every delivered event for the deliveries list, so the dead rows a drained
// queue leaves sit on a small share of a large table. A vacuum then skips the indexes by default
// (dead rows on fewer than 2 % of the pages, Postgres 14+), and the finished events' entries would
// stay in the pending index every claim's probe walks: the table's settings force the cleanup on.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../helpers/context.js';

/** Delivered events kept: enough pages that the backlog's dead rows fill fewer than 2 % of them. */
const HISTORY = 120_000;
let db: TestDb;
beforeAll(async () => {
  db = await createTestDb();
});
afterAll(async () => {
  await db?.drop();
});

type Plan = { 'Shared Hit Blocks': number; 'Shared Read Blocks': number };
/** Pages a claim's probe of the area's pending index reads to find its first queue's head. */
const probe = async (area: number): Promise<number> => {
  const { rows } = await db.pool.query<{ 'QUERY PLAN': { Plan: Plan }[] }>(
    `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT id FROM forward_events
     WHERE status = 'pending' AND area_id = $1 AND conversation_id IS NOT NULL ORDER BY area_id, conversation_id, sort_at, sort_seq, id LIMIT 1`, [area]);
  const plan = rows[0]!['QUERY PLAN'][0]!.Plan;
  return plan['Shared Hit Blocks'] + plan['Shared Read Blocks'];
};

it('a plain vacuum after the queue drained removes the finished events from the pending index, however long the history', async () => {
  const { rows } = await db.pool.query<{ id: string }>("INSERT INTO areas (name, webhook_url) VALUES ('History', 'http://127.0.0.1:9/') RETURNING id");
  const area = Number(rows[0]!.id);
  // History: delivered events of ~1.8 kB (HISTORY / 4 pages); then a backlog of small pending ones.
  await db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, body, status, attempts, finished_at)
     SELECT $1, g % 500 + 1, 'message.received', repeat(md5(g::text), 56), 'succeeded', 1, now() FROM generate_series(1, $2::int) g`, [area, HISTORY]);
  await db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data)
     SELECT $1, g % 200 + 1, 'message.received', jsonb_build_object('n', g) FROM generate_series(1, 5000) g`, [area]);
  await db.pool.query('VACUUM (FREEZE) forward_events');
  // The backlog is delivered: 5,000 dead rows, the autovacuum threshold of the table's settings.
  await db.pool.query("UPDATE forward_events SET status = 'succeeded', attempts = 1, finished_at = now() WHERE status = 'pending'");
  await db.pool.query('VACUUM forward_events');
  await probe(area); // a probe marks the dead entries it steps over; the second one shows what is left
  const afterVacuum = await probe(area);
  await db.pool.query('VACUUM (INDEX_CLEANUP ON) forward_events');
  const afterIndexCleanup = await probe(area);
  // Nothing is pending: a cleaned index answers from its root.
  expect(afterIndexCleanup).toBeLessThanOrEqual(2);
  expect(afterVacuum).toBe(afterIndexCleanup);
}, 120_000);
