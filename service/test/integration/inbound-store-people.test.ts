// The inbound store resolves each message's contact and conversation before storing it. A known
// customer whose details have not changed is read, not upserted: an upsert locks the contact's row
// even when it changes nothing, so each batch wrote a lock to the WAL, took a write transaction
// of its own, and waited for anyone else holding the row. What the customer's details and
// conversations end up as must not change for it.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeInboundBatch } from '../../src/store/inbound-store.js';
import { parseEvent } from '../../src/whatsapp/parse.js';
import { createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';

const OTHER_NUMBER_ID = '106540352249999';
let db: TestDb;
let channels: Map<string, number>;

beforeAll(async () => {
  db = await createTestDb();
  const { rows } = await db.pool.query<{ id: string; phone_number_id: string }>(
    "INSERT INTO channels (phone_number_id, name) VALUES ($1, 'main'), ($2, 'other') RETURNING id, phone_number_id",
    [PHONE_NUMBER_ID, OTHER_NUMBER_ID],
  );
  channels = new Map(rows.map((r) => [r.phone_number_id, Number(r.id)]));
});
afterAll(async () => {
  await db?.drop();
});

let seq = 0;
/** Stores one text message from `from` as a webhook would bring it; `profile: null` leaves the contacts block out. */
async function store(from: string, opts: { profile?: { name?: string; username?: string } | null; userId?: string; numberId?: string } = {}) {
  const wamid = `wamid.PEOPLE${++seq}`;
  const contact = opts.profile === null ? [] : [{ profile: { name: 'Ana', ...opts.profile }, wa_id: from, ...(opts.userId ? { user_id: opts.userId } : {}) }];
  const raw = JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
      messaging_product: 'whatsapp',
      metadata: { display_phone_number: '15550001111', phone_number_id: opts.numberId ?? PHONE_NUMBER_ID },
      contacts: contact,
      messages: [{ from, id: wamid, timestamp: String(1_760_000_000 + seq), type: 'text', text: { body: `hello ${seq}` } }],
    } }] }],
  });
  const result = await storeInboundBatch(db.pool, [{ sha256: createHash('sha256').update(raw).digest(), receivedAt: new Date(), raw, parsed: parseEvent(JSON.parse(raw)) }], channels);
  return { wamid, result };
}

const contactOf = async (waId: string) =>
  (await db.pool.query<{ id: string; profile_name: string | null; user_id: string | null; username: string | null }>('SELECT id, profile_name, user_id, username FROM contacts WHERE wa_id = $1', [waId])).rows[0];

describe('a known customer', () => {
  it('is stored while their contact row is locked elsewhere: an unchanged contact is read, not upserted', async () => {
    const from = '5511900000001';
    await store(from);
    const contact = (await contactOf(from))!;
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE', [contact.id]);
      const stored = store(from).then(() => 'stored' as const);
      const outcome = await Promise.race([stored, new Promise<'waited'>((r) => setTimeout(() => r('waited'), 3_000))]);
      expect(outcome).toBe('stored');
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    const { rows } = await db.pool.query('SELECT unread_count FROM conversations WHERE contact_id = $1', [contact.id]);
    expect(rows).toEqual([{ unread_count: 2 }]);
  });

  it('who changed their name, username or BSUID has it stored; a webhook without their details erases nothing', async () => {
    const from = '5511900000002';
    await store(from, { profile: { name: 'Ana' } });
    await store(from, { profile: { name: 'Ana Lima' } });
    expect(await contactOf(from)).toMatchObject({ profile_name: 'Ana Lima', user_id: null, username: null });
    await store(from, { profile: { name: 'Ana Lima', username: 'analima' }, userId: 'BR.7000000000002' });
    expect(await contactOf(from)).toMatchObject({ profile_name: 'Ana Lima', user_id: 'BR.7000000000002', username: 'analima' });
    await store(from, { profile: null });
    expect(await contactOf(from)).toMatchObject({ profile_name: 'Ana Lima', user_id: 'BR.7000000000002', username: 'analima' });
    const { rows } = await db.pool.query('SELECT count(*)::int AS n, sum(unread_count)::int AS unread FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE ct.wa_id = $1', [from]);
    expect(rows[0]).toEqual({ n: 1, unread: 4 });
  });

  it('writing to another of our numbers gets a conversation there, under the same contact', async () => {
    const from = '5511900000003';
    const first = await store(from);
    const second = await store(from, { numberId: OTHER_NUMBER_ID });
    expect(second.result.newMessages[0]!.conversationId).not.toBe(first.result.newMessages[0]!.conversationId);
    const third = await store(from, { numberId: OTHER_NUMBER_ID });
    expect(third.result.newMessages[0]!.conversationId).toBe(second.result.newMessages[0]!.conversationId);
    const { rows } = await db.pool.query(
      'SELECT c.channel_id::int AS channel, c.unread_count FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE ct.wa_id = $1 ORDER BY c.channel_id',
      [from],
    );
    expect(rows).toEqual([{ channel: channels.get(PHONE_NUMBER_ID), unread_count: 1 }, { channel: channels.get(OTHER_NUMBER_ID), unread_count: 2 }]);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM contacts WHERE wa_id = $1', [from])).rows[0].n).toBe(1);
  });

  it('has one conversation per number: a second one for the same pair is refused', async () => {
    const from = '5511900000004';
    const { result } = await store(from);
    const { rows } = await db.pool.query<{ channel_id: string; contact_id: string }>('SELECT channel_id, contact_id FROM conversations WHERE id = $1', [result.newMessages[0]!.conversationId]);
    await expect(db.pool.query('INSERT INTO conversations (channel_id, contact_id) VALUES ($1, $2)', [rows[0]!.channel_id, rows[0]!.contact_id])).rejects.toMatchObject({ code: '23505' });
  });
});

describe('a known customer, one detail changed at a time', () => {
  it('a username alone, then a BSUID alone, then a name alone is stored', async () => {
    const from = '5511900000009';
    await store(from, { profile: { name: 'Bia' } });
    await store(from, { profile: { name: 'Bia', username: 'bia' } });
    expect(await contactOf(from)).toMatchObject({ profile_name: 'Bia', user_id: null, username: 'bia' });
    await store(from, { profile: { name: 'Bia', username: 'bia' }, userId: 'BR.7000000000009' });
    expect(await contactOf(from)).toMatchObject({ profile_name: 'Bia', user_id: 'BR.7000000000009', username: 'bia' });
    await store(from, { profile: { name: 'Bia S', username: 'bia' }, userId: 'BR.7000000000009' });
    expect(await contactOf(from)).toMatchObject({ profile_name: 'Bia S', user_id: 'BR.7000000000009', username: 'bia' });
  });
});

describe('a known customer draws no id', () => {
  it('stores a message of a known, unchanged customer without drawing a contact or conversation id', async () => {
    const from = '5511900000010';
    await store(from);
    const seqs = async () => (await db.pool.query("SELECT (SELECT last_value FROM contacts_id_seq) AS contacts, (SELECT last_value FROM conversations_id_seq) AS conversations")).rows[0];
    const before = await seqs();
    await store(from);
    await store(from, { profile: null });
    expect(await seqs()).toEqual(before);
  });
});

describe('one write transaction per batch', () => {
  it("a known, unchanged customer's message assigns one transaction id (the storing statement's), not two", async () => {
    const from = '5511900000011';
    await store(from);
    const xid = async () => BigInt((await db.pool.query('SELECT pg_current_xact_id()::text AS x')).rows[0].x);
    const before = await xid();
    await store(from);
    const after = await xid();
    // One for the storing statement, one for the second pg_current_xact_id() itself.
    expect(after - before).toBe(2n);
  });
});
