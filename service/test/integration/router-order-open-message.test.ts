// The order lock router_forward_messages takes in its inserting statement (migration 024), seen
// from the area's receiver (router-order-open-store holds a *status* store open). Here a customer's
// message is stored by the inbound store's own code in a transaction held open past the settle
// time, while a later status of the business's reply in the same conversation commits through the
// webhook. The area's receiver must get the message first.
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
  app = await startApp(db, 'all', { FORWARD_ALLOW_PRIVATE: 'true', FORWARD_POLL_MS: '20', FORWARD_ORDER_SETTLE_MS: String(SETTLE_MS), FORWARD_ORDER_MAX_WAIT_MS: '600000' });
});
afterAll(async () => {
  await app?.stop();
  await receiver?.close();
  await db?.drop();
});

const customer = '5511977770009';
const envelope = (value: Record<string, unknown>) => JSON.stringify({
  object: 'whatsapp_business_account',
  entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID }, ...value } }] }],
});
const message = (id: string, body: string, at: number) => envelope({
  contacts: [{ profile: { name: 'Customer' }, wa_id: customer }],
  messages: [{ from: customer, id, timestamp: String(at), type: 'text', text: { body } }],
});
const api = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${app.url}${path}`, { method, headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await json(res) };
};

it('waits for a transaction still storing a customer message before forwarding a later status of the conversation', async () => {
  const area = await api('POST', '/v1/areas', { name: 'Support', webhookUrl: receiver.url, events: ['message.received', 'message.status'] });
  expect(area.status).toBe(201);
  receiver.secrets.push(area.body.secret);
  expect((await postWebhook(app.url, message('wamid.OM-first', 'hello', Math.floor(Date.now() / 1000) - 60))).status).toBe(200);
  const conv = await eventually(async () => (await db.pool.query<{ conversation_id: number; channel_id: number; contact_id: number }>("SELECT conversation_id, channel_id, contact_id FROM messages WHERE wamid = 'wamid.OM-first'")).rows[0], { what: 'the first message stored' });
  expect((await api('POST', `/v1/conversations/${conv.conversation_id}/assign`, { areaId: area.body.id })).status).toBe(200);
  const now = Math.floor(Date.now() / 1000) + 1;
  await db.pool.query(
    `INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, source, type, body, raw, wa_timestamp, status)
     VALUES ('wamid.OM-reply', $1, $2, $3, 'outbound', 'api', 'text', 'how can we help?', '{}', to_timestamp($4), 'sent')`,
    [conv.channel_id, conv.conversation_id, conv.contact_id, now],
  );
  const before = receiver.delivered().length;
  const raw = message('wamid.OM-question', 'a question', now + 1);
  const storing = await db.pool.connect();
  try {
    await storing.query('BEGIN');
    await storeInboundBatch(storing as unknown as Pool, [{ sha256: createHash('sha256').update(raw).digest(), receivedAt: new Date(), raw, parsed: parseEvent(JSON.parse(raw)) }], new Map([[PHONE_NUMBER_ID, conv.channel_id]]));
    // The reply is read after the question was sent; that webhook is stored and committed meanwhile.
    const read = envelope({ statuses: [{ id: 'wamid.OM-reply', status: 'read', timestamp: String(now + 2), recipient_id: customer }] });
    expect((await postWebhook(app.url, read)).status).toBe(200);
    await eventually(async () => (await db.pool.query("SELECT 1 FROM forward_events e JOIN messages m ON m.id = e.message_id WHERE m.wamid = 'wamid.OM-reply' AND e.type = 'message.status'")).rowCount === 1, { what: 'the status queued' });
    await new Promise((r) => setTimeout(r, SETTLE_MS * 8));
    await storing.query('COMMIT');
  } finally {
    storing.release();
  }
  await eventually(async () => receiver.delivered().length >= before + 2, { what: 'both events forwarded' });
  await new Promise((r) => setTimeout(r, SETTLE_MS * 2));
  expect(receiver.delivered().slice(before).map((x) => (x.body.type === 'message.status' ? `status ${String(x.body.data.status)}` : `message ${String(x.body.data.message?.body)}`)))
    .toEqual(['message a question', 'status read']);
});
