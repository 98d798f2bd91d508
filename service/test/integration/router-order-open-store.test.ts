// A conversation's events reach its area in order when the transaction storing an earlier one
// is still open, past the settle time, while a later one commits: the earlier event is stored by
// the inbound store's own code in a transaction held open, the later one arrives through the
// webhook and commits at once. The area's real receiver must get the earlier one first, whichever
// forwarding trigger queued it (a status: router_forward_statuses; a customer's message:
// router_forward_messages, each taking the order lock in its inserting statement, migration 024).
// A write transaction left open that stores nothing into the conversation holds nothing back.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { storeInboundBatch } from '../../src/store/inbound-store.js';
import type { Pool } from '../../src/store/pool.js';
import { parseEvent } from '../../src/whatsapp/parse.js';
import { API_TOKEN, createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';

const SETTLE_MS = 100;
let db: TestDb;
let app: RunningApp;
let receiver: Receiver;

beforeAll(async () => {
  db = await createTestDb();
  receiver = await startReceiver();
  // No wait runs out during a test: what leaves while a transaction is open left because nothing held it.
  app = await startApp(db, 'all', { FORWARD_ALLOW_PRIVATE: 'true', FORWARD_POLL_MS: '20', FORWARD_ORDER_SETTLE_MS: String(SETTLE_MS), FORWARD_ORDER_MAX_WAIT_MS: '600000' });
});
afterAll(async () => {
  await app?.stop();
  await receiver?.close();
  await db?.drop();
});

const customer = '5511977770001';
const envelope = (value: Record<string, unknown>) => JSON.stringify({
  object: 'whatsapp_business_account',
  entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID }, ...value } }] }],
});
const message = (id: string, body: string, at: number, from = customer) => envelope({
  contacts: [{ profile: { name: 'Customer' }, wa_id: from }],
  messages: [{ from, id, timestamp: String(at), type: 'text', text: { body } }],
});
const api = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${app.url}${path}`, { method, headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await json(res) };
};

/** Events the receiver got since `from`, as the order checks read them. */
const seen = (from: number) => receiver.delivered().slice(from).map((x) => (x.body.type === 'message.status' ? `status ${String(x.body.data.status)}` : `message ${String(x.body.data.message?.body)}`));

/**
 * A conversation assigned to a new area wanting messages and statuses, with the business's reply
 * already sent after the assignment (its statuses are what Meta reports next); `now` sorts after
 * the assignment.
 */
async function assignedWithReply(from: string, tag: string): Promise<{ conv: { conversation_id: number; channel_id: number }; now: number }> {
  const area = await api('POST', '/v1/areas', { name: `Support ${tag}`, webhookUrl: receiver.url, events: ['message.received', 'message.status'] });
  expect(area.status).toBe(201);
  receiver.secrets.push(area.body.secret);
  expect((await postWebhook(app.url, message(`wamid.${tag}-first`, 'hello', Math.floor(Date.now() / 1000) - 60, from))).status).toBe(200);
  const conv = await eventually(async () => {
    const { rows } = await db.pool.query<{ conversation_id: number; channel_id: number; contact_id: number }>('SELECT conversation_id, channel_id, contact_id FROM messages WHERE wamid = $1', [`wamid.${tag}-first`]);
    return rows[0];
  }, { what: 'the first message stored' });
  expect((await api('POST', `/v1/conversations/${conv.conversation_id}/assign`, { areaId: area.body.id })).status).toBe(200);
  const now = Math.floor(Date.now() / 1000) + 1;
  await db.pool.query(
    `INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, source, type, body, raw, wa_timestamp, status)
     VALUES ($4, $1, $2, $3, 'outbound', 'api', 'text', 'how can we help?', '{}', to_timestamp($5), 'sent')`,
    [conv.channel_id, conv.conversation_id, conv.contact_id, `wamid.${tag}-reply`, now],
  );
  return { conv, now };
}

/**
 * Stores `raw` with the inbound store's code in a transaction held open while `meanwhile` posts
 * the later webhook and waits for its event to be queued, then many settle times and polls (a
 * claim that does not wait for the open transaction has taken the later event by then).
 */
async function storeHeldOpen(raw: string, channelId: number, meanwhile: () => Promise<void>): Promise<void> {
  const storing = await db.pool.connect();
  try {
    await storing.query('BEGIN');
    await storeInboundBatch(storing as unknown as Pool, [{ sha256: createHash('sha256').update(raw).digest(), receivedAt: new Date(), raw, parsed: parseEvent(JSON.parse(raw)) }], new Map([[PHONE_NUMBER_ID, channelId]]));
    await meanwhile();
    await new Promise((r) => setTimeout(r, SETTLE_MS * 8));
    await storing.query('COMMIT');
  } finally {
    storing.release();
  }
}

it('waits for a storing transaction still open past the settle time before forwarding what follows it', async () => {
  const before = receiver.delivered().length;
  const { conv, now } = await assignedWithReply(customer, 'ORDER');
  // The status of the reply held open; the customer's answer after it commits meanwhile.
  await storeHeldOpen(envelope({ statuses: [{ id: 'wamid.ORDER-reply', status: 'delivered', timestamp: String(now + 1), recipient_id: customer }] }), conv.channel_id, async () => {
    expect((await postWebhook(app.url, message('wamid.ORDER-answer', 'thanks', now + 2))).status).toBe(200);
    await eventually(async () => (await db.pool.query("SELECT 1 FROM forward_events e JOIN messages m ON m.id = e.message_id WHERE m.wamid = 'wamid.ORDER-answer'")).rowCount === 1, { what: 'the answer queued' });
  });
  await eventually(async () => receiver.delivered().length >= before + 2, { what: 'both events forwarded' });
  await new Promise((r) => setTimeout(r, SETTLE_MS * 2));
  expect(seen(before)).toEqual(['status delivered', 'message thanks']);
  expect(receiver.delivered().slice(before).every((x) => x.verified)).toBe(true);
});

it('waits for a transaction still storing a customer message before forwarding a later status of the conversation', async () => {
  const from = '5511977770009';
  const before = receiver.delivered().length;
  const { conv, now } = await assignedWithReply(from, 'OM');
  // The customer's question held open; the status of the reply, read after it, commits meanwhile.
  await storeHeldOpen(message('wamid.OM-question', 'a question', now + 1, from), conv.channel_id, async () => {
    const read = envelope({ statuses: [{ id: 'wamid.OM-reply', status: 'read', timestamp: String(now + 2), recipient_id: from }] });
    expect((await postWebhook(app.url, read)).status).toBe(200);
    await eventually(async () => (await db.pool.query("SELECT 1 FROM forward_events e JOIN messages m ON m.id = e.message_id WHERE m.wamid = 'wamid.OM-reply' AND e.type = 'message.status'")).rowCount === 1, { what: 'the status queued' });
  });
  await eventually(async () => receiver.delivered().length >= before + 2, { what: 'both events forwarded' });
  await new Promise((r) => setTimeout(r, SETTLE_MS * 2));
  expect(seen(before)).toEqual(['message a question', 'status read']);
});

it('forwards at once while a write transaction that stores nothing into the conversation stays open', async () => {
  const other = '5511977770002';
  const area = await api('POST', '/v1/areas', { name: 'Sales', webhookUrl: receiver.url, events: ['message.received'] });
  expect(area.status).toBe(201);
  receiver.secrets.push(area.body.secret);
  expect((await postWebhook(app.url, message('wamid.OPEN-first', 'hi', Math.floor(Date.now() / 1000) - 60, other))).status).toBe(200);
  const conv = await eventually(async () => (await db.pool.query<{ conversation_id: number }>("SELECT conversation_id FROM messages WHERE wamid = 'wamid.OPEN-first'")).rows[0], { what: 'the first message stored' });
  expect((await api('POST', `/v1/conversations/${conv.conversation_id}/assign`, { areaId: area.body.id })).status).toBe(200);
  const before = receiver.delivered().length;
  // Any write left open (another conversation's store, a report's temp table): it has a transaction id until it ends.
  const writing = await db.pool.connect();
  try {
    await writing.query('BEGIN');
    await writing.query('SELECT pg_current_xact_id()');
    expect((await postWebhook(app.url, message('wamid.OPEN-next', 'a question', Math.floor(Date.now() / 1000) + 1, other))).status).toBe(200);
    const got = await eventually(async () => receiver.delivered().slice(before).find((x) => x.body.data.message?.wamid === 'wamid.OPEN-next'), { timeoutMs: 30_000, what: 'the message forwarded while the other transaction is open' });
    expect(got.verified).toBe(true);
  } finally {
    await writing.query('ROLLBACK');
    writing.release();
  }
});
