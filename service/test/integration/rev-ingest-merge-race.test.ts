// Review of s11-ingest: a batch of a customer's NEW number that resolves its contact and
// conversation while a number change's merge (applyIdentityChanges) of that same contact is in
// progress. The merge moves the new number's early conversation to the old contact (the old
// contact has no conversation on that channel) and deletes the new number's early contact.
// The inbound store's comment says the batch then "fails the next insert's foreign key, and runs
// again"; messages.contact_id has no foreign key, so when the conversation is moved rather than
// deleted the message is stored pointing at a deleted contact, invisible to every read that joins
// contacts (GET /v1/messages/:id, the conversation's messages, the router's forwarding payload).
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
});
