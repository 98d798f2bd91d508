// A batch of a customer's NEW number that resolves its contact and conversation while a number
// change's merge (applyIdentityChanges) of that same contact is in progress or has just committed.
// The merge moves the new number's early conversation to the old contact (when the old contact has
// no conversation on that channel) and deletes the new number's early contact; messages.contact_id
// has no foreign key, so a message stored under the contact the batch read would point at a
// deleted contact, invisible to every read that joins contacts (GET /v1/messages, the
// conversation's messages, the router's forwarding payload).
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../../src/store/pool.js';
import { storeInboundBatch } from '../../src/store/inbound-store.js';
import { parseEvent } from '../../src/whatsapp/parse.js';
import { findMessage } from '../../src/store/messages-read.js';
import { contact, envelope, change, systemMessage, textMessage } from '../fixtures/payloads.js';
import { createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';

const OTHER_NUMBER_ID = '106540352249998';
let db: TestDb;
let channels: Map<string, number>;

beforeAll(async () => {
  db = await createTestDb();
  const { rows } = await db.pool.query<{ id: string; phone_number_id: string }>(
    "INSERT INTO channels (phone_number_id, name) VALUES ($1, 'a'), ($2, 'b') RETURNING id, phone_number_id",
    [PHONE_NUMBER_ID, OTHER_NUMBER_ID],
  );
  channels = new Map(rows.map((r) => [r.phone_number_id, Number(r.id)]));
});
afterAll(async () => {
  await db?.drop();
});

type Msg = ReturnType<typeof textMessage>;
function record(phoneNumberId: string, messages: Msg[], froms: string[]) {
  const raw = JSON.stringify(envelope(change({ phoneNumberId, messages, contacts: froms.map((waId) => contact({ waId, name: `User ${waId.slice(-4)}` })) })));
  return { sha256: createHash('sha256').update(raw).digest(), receivedAt: new Date(), raw, parsed: parseEvent(JSON.parse(raw)) };
}

/** The pool, with the transaction's COMMIT held until `release` is called. */
function pausedCommitPool(pool: Pool) {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let reached!: () => void;
  const atCommit = new Promise<void>((r) => (reached = r));
  const proxy = {
    query: pool.query.bind(pool),
    connect: async () => {
      const client = await pool.connect();
      const query = client.query.bind(client);
      (client as unknown as { query: unknown }).query = async (...args: unknown[]) => {
        if (args[0] === 'COMMIT') {
          reached();
          await gate;
        }
        return (query as (...a: unknown[]) => unknown)(...args);
      };
      return client;
    },
  } as unknown as Pool;
  return { proxy, release, atCommit };
}

/** What the inbound processor does: runs the batch again on 40P01/40001/23503/23505, three attempts. */
async function storeLikeTheProcessor(rec: ReturnType<typeof record>) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await storeInboundBatch(db.pool, [rec], channels);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (['40P01', '40001', '23503', '23505'].includes(code ?? '') && attempt < 3) continue;
      throw err;
    }
  }
}

describe('a new-number batch racing the number change that merges its contact', () => {
  it('stores the message under a contact that exists', async () => {
    const oldNo = '5511944440001';
    const newNo = '5511944440002';
    const T = Math.floor(Date.now() / 1000) - 600;
    // The old number wrote on channel A; the new number's first message came early, on channel B.
    await storeLikeTheProcessor(record(PHONE_NUMBER_ID, [textMessage({ from: oldNo, timestamp: T - 100, body: 'old' })], [oldNo]));
    await storeLikeTheProcessor(record(OTHER_NUMBER_ID, [textMessage({ from: newNo, timestamp: T + 1, body: 'early' })], [newNo]));

    // The change arrives; its merge runs up to its COMMIT and is held there.
    const { proxy, release, atCommit } = pausedCommitPool(db.pool);
    const merging = storeInboundBatch(proxy, [record(PHONE_NUMBER_ID, [systemMessage({ from: oldNo, newWaId: newNo, timestamp: T })], [])], channels);
    await atCommit;

    // The new number writes again on channel B meanwhile; the merge then commits.
    const late = textMessage({ from: newNo, timestamp: T + 5, body: 'late' });
    const storing = storeLikeTheProcessor(record(OTHER_NUMBER_ID, [late], [newNo]));
    await new Promise((r) => setTimeout(r, 500));
    release();
    await merging;
    await storing;

    const { rows } = await db.pool.query<{ contact_id: string; contact_exists: boolean; wa_id: string | null }>(
      'SELECT m.contact_id, ct.id IS NOT NULL AS contact_exists, ct.wa_id FROM messages m LEFT JOIN contacts ct ON ct.id = m.contact_id WHERE m.wamid = $1',
      [late.id],
    );
    expect(rows).toHaveLength(1);
    // What GET /v1/messages?wamid= answers (it joins contacts): the message must be there.
    const seen = await findMessage(db.pool, { wamid: late.id! });
    expect({ visible: seen !== null, row: rows[0] }).toMatchObject({ visible: true, row: { contact_exists: true, wa_id: newNo } });
  });

  it('same channel (the merge deletes the conversation): the batch fails its foreign key, runs again, and is stored once', async () => {
    const oldNo = '5511944440011';
    const newNo = '5511944440012';
    const T = Math.floor(Date.now() / 1000) - 600;
    await storeLikeTheProcessor(record(PHONE_NUMBER_ID, [textMessage({ from: oldNo, timestamp: T - 100, body: 'old' })], [oldNo]));
    await storeLikeTheProcessor(record(PHONE_NUMBER_ID, [textMessage({ from: newNo, timestamp: T + 1, body: 'early' })], [newNo]));
    const { proxy, release, atCommit } = pausedCommitPool(db.pool);
    const merging = storeInboundBatch(proxy, [record(PHONE_NUMBER_ID, [systemMessage({ from: oldNo, newWaId: newNo, timestamp: T })], [])], channels);
    await atCommit;
    const late = textMessage({ from: newNo, timestamp: T + 5, body: 'late' });
    const storing = storeLikeTheProcessor(record(PHONE_NUMBER_ID, [late], [newNo]));
    await new Promise((r) => setTimeout(r, 500));
    release();
    await merging;
    await storing;
    expect(await findMessage(db.pool, { wamid: late.id! })).not.toBeNull();
    const { rows } = await db.pool.query('SELECT count(*)::int AS n, sum(unread_count)::int AS unread FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE ct.wa_id = $1', [newNo]);
    // old, early, the system message, late: each once, in the one conversation.
    expect(rows[0]).toEqual({ n: 1, unread: 4 });
    const msgs = await db.pool.query('SELECT count(*)::int AS n FROM messages m JOIN contacts ct ON ct.id = m.contact_id WHERE ct.wa_id = $1', [newNo]);
    expect(msgs.rows[0].n).toBe(4);
  });

  it('resolved just before the merge, stored just after it commits: stored under the contact that exists', async () => {
    const oldNo = '5511944440021';
    const newNo = '5511944440022';
    const T = Math.floor(Date.now() / 1000) - 600;
    await storeLikeTheProcessor(record(PHONE_NUMBER_ID, [textMessage({ from: oldNo, timestamp: T - 100, body: 'old' })], [oldNo]));
    await storeLikeTheProcessor(record(OTHER_NUMBER_ID, [textMessage({ from: newNo, timestamp: T + 1, body: 'early' })], [newNo]));
    // The batch's STORE statement (the second round trip) is held until the merge has committed.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let reached!: () => void;
    const atStore = new Promise<void>((r) => (reached = r));
    const proxy = {
      query: async (sql: string, params?: unknown[]) => {
        if (typeof sql === 'string' && sql.includes('ev_ins AS')) {
          reached();
          await gate;
        }
        return db.pool.query(sql, params);
      },
      connect: () => db.pool.connect(),
    } as unknown as Pool;
    const late = textMessage({ from: newNo, timestamp: T + 5, body: 'late' });
    const storing = storeInboundBatch(proxy, [record(OTHER_NUMBER_ID, [late], [newNo])], channels);
    await atStore;
    await storeInboundBatch(db.pool, [record(PHONE_NUMBER_ID, [systemMessage({ from: oldNo, newWaId: newNo, timestamp: T })], [])], channels);
    release();
    await storing;
    expect(await findMessage(db.pool, { wamid: late.id! })).not.toBeNull();
  });
});

describe('one new customer, several batches at once', () => {
  it('ends with one contact, one conversation per number, every message once, unread = messages', async () => {
    for (let round = 0; round < 5; round++) {
      const from = `55119555500${round}0`;
      const T = Math.floor(Date.now() / 1000) - 600;
      const msgs = Array.from({ length: 8 }, (_, i) => textMessage({ from, timestamp: T + i, body: `m${i}` }));
      await Promise.all(msgs.map((m, i) => storeLikeTheProcessor(record(i % 2 === 0 ? PHONE_NUMBER_ID : OTHER_NUMBER_ID, [m], [from]))));
      const { rows } = await db.pool.query(
        `SELECT (SELECT count(*)::int FROM contacts WHERE wa_id = $1) AS contacts,
                (SELECT count(*)::int FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE ct.wa_id = $1) AS conversations,
                (SELECT sum(unread_count)::int FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE ct.wa_id = $1) AS unread,
                (SELECT count(*)::int FROM messages m JOIN contacts ct ON ct.id = m.contact_id WHERE ct.wa_id = $1) AS messages`,
        [from],
      );
      expect(rows[0]).toEqual({ contacts: 1, conversations: 2, unread: 8, messages: 8 });
    }
  });
});
