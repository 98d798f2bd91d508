// Migration 031 reordered conversations' unique key to (contact_id, channel_id) and dropped
// conversations_contact_idx and inbound_events_received_idx. Every query that reads conversations
// by contact, by (channel, contact), and the unrouted events must still use an index on a
// realistically sized database (100k contacts, 3 channels, 150k conversations, 100k events): a
// sequential scan there is a merge, a rename or a replay page reading the whole table, and so is an
// "Index Scan" on a key whose leading column the query does not give (the whole index read: with
// main's (channel_id, contact_id) order, reading by contact alone took 577-627 pages here, against
// 7-60 with the key reordered), hence the bound on pages as well.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../helpers/context.js';

let db: TestDb;
beforeAll(async () => {
  db = await createTestDb();
  await db.pool.query(`INSERT INTO channels (phone_number_id, name) SELECT '1065403522' || g, 'c' || g FROM generate_series(1, 3) g`);
  await db.pool.query(`INSERT INTO contacts (wa_id, profile_name) SELECT (5511900000000 + g)::text, 'User ' || g FROM generate_series(1, 100000) g`);
  await db.pool.query(`INSERT INTO conversations (channel_id, contact_id, last_message_at)
    SELECT ch.id, ct.id, now() - (ct.id || ' seconds')::interval FROM contacts ct JOIN channels ch ON ch.id = 1 OR (ch.id = 2 AND ct.id % 2 = 0)`);
  await db.pool.query(`INSERT INTO inbound_events (body_sha256, received_at, fields, phone_number_ids, unrouted, payload)
    SELECT sha256(g::text::bytea), now() - (g || ' seconds')::interval, '{messages}', '{106540352299}', g % 1000 = 0, '{}'::json FROM generate_series(1, 100000) g`);
  await db.pool.query('ANALYZE');
}, 300_000);
afterAll(async () => {
  await db?.drop();
});

/** Pages the whole plan touched (its top node's Buffers line: hit + read). */
function pages(plan: string): number {
  const m = /Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?/.exec(plan);
  return Number(m?.[1] ?? 0) + Number(m?.[2] ?? 0);
}

/** The executed plan (EXPLAIN ANALYZE in a rolled-back transaction: writes leave nothing). */
async function plan(sql: string, params: unknown[] = []): Promise<string> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) ${sql}`, params);
    await client.query('ROLLBACK');
    return rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n');
  } finally {
    client.release();
  }
}

describe('plans after migration 031', () => {
  it('reads conversations by contact and by (channel, contact), and the unrouted events, through an index', async () => {
    const plans = {
      'merge: conversations of two contacts FOR UPDATE': await plan('SELECT id, channel_id, contact_id FROM conversations WHERE contact_id = ANY($1::bigint[]) ORDER BY id FOR UPDATE', [[5000, 5001]]),
      'merge: older messages of a contact': await plan(`SELECT 1 FROM conversations c JOIN messages m ON m.conversation_id = c.id WHERE c.contact_id = $1 AND m.wa_timestamp < now() - interval '5 minutes' LIMIT 1`, [5000]),
      // The statement contacts_search_text_update's function runs for a renamed contact.
      'contact search-text trigger: its UPDATE': await plan(`UPDATE conversations SET search_text = 'x' WHERE contact_id = $1 AND search_text IS DISTINCT FROM 'x'`, [5000]),
      // The query the foreign key conversations.contact_id runs when a merge deletes a contact.
      'contact delete: the FK check on conversations': await plan('SELECT 1 FROM ONLY conversations x WHERE contact_id = $1 FOR KEY SHARE OF x', [5001]),
      'conversation by channel and wa_id': await plan('SELECT c.id FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE c.channel_id = $1 AND ct.wa_id = $2', [2, '5511900005000']),
      'conversations of one channel (inbox filter)': await plan(`SELECT id FROM conversations WHERE channel_id = $1 ORDER BY coalesce(last_message_at, '-infinity'::timestamptz) DESC, id DESC LIMIT 50`, [2]),
      'unrouted replay page': await plan('SELECT id FROM inbound_events WHERE unrouted AND id > $1 ORDER BY id LIMIT 200', [0]),
    };
    for (const [name, p] of Object.entries(plans)) {
      expect(p, name).not.toMatch(/Seq Scan on (conversations|inbound_events)/);
      // The most any of them touches is a page of 50-100 rows (about 100 pages): 200 is far below a table or index read.
      expect(pages(p), `${name}\n${p}`).toBeLessThan(200);
    }
  }, 120_000);
});
