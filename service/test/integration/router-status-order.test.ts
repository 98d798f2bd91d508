// A message's statuses reach its area in rank order when Meta's webhooks bring them out of order,
// and a late lower status is still forwarded (every event, at least once) with the message as it
// is now: its data.message.status is the one GET /v1/messages/:id shows.
// Each status arrives in a webhook of its own and is stored before the next one is posted (one
// batch each, as separate workers store them). The area's real receiver verifies the signatures.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { API_TOKEN, createTestDb, PHONE_NUMBER_ID, uniquePrefix, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { customerText } from '../helpers/meta-samples.js';

let db: TestDb;
let ingest: RunningApp;
let deliverer: RunningApp | undefined;
let receiver: Receiver;
const env = { QUEUE_PREFIX: uniquePrefix(), FORWARD_ALLOW_PRIVATE: 'true', FORWARD_POLL_MS: '20' };
const customer = '5511966660001';

const api = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${ingest.url}${path}`, { method, headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: await json(res) };
};
const statusWebhook = (wamid: string, status: string, at: number) => JSON.stringify({
  object: 'whatsapp_business_account',
  entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
    messaging_product: 'whatsapp', metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID },
    statuses: [{ id: wamid, status, timestamp: String(at), recipient_id: customer }],
  } }] }],
});

/** Posts one status and waits until it is stored: the next one is another batch. */
async function storeStatus(wamid: string, status: string, at: number): Promise<void> {
  expect((await postWebhook(ingest.url, statusWebhook(wamid, status, at))).status).toBe(200);
  await eventually(async () => (await db.pool.query('SELECT 1 FROM message_statuses WHERE wamid = $1 AND status = $2', [wamid, status])).rowCount === 1, { what: `${status} stored` });
}

/** The statuses of `messageId` the area got, in order. */
const forwarded = (messageId: number) => receiver.delivered()
  .filter((x) => x.body.type === 'message.status' && (x.body.data.message as { id: number }).id === messageId)
  .map((x) => String(x.body.data.status));

let conv: { conversation_id: number; channel_id: number; contact_id: number };

/** A reply of the business in the assigned conversation (its statuses are what Meta reports next). */
async function reply(wamid: string): Promise<number> {
  const { rows } = await db.pool.query<{ id: string }>(
    `INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, source, type, body, raw, wa_timestamp, status)
     VALUES ($4, $1, $2, $3, 'outbound', 'api', 'text', 'how can we help?', '{}', now(), 'pending') RETURNING id`,
    [conv.channel_id, conv.conversation_id, conv.contact_id, wamid],
  );
  return Number(rows[0]!.id);
}

beforeAll(async () => {
  db = await createTestDb();
  receiver = await startReceiver();
  // Stores and routes, delivers nothing: what it queues waits for the deliverer.
  ingest = await startApp(db, 'all', { ...env, FORWARD_DELIVERY: 'false' });
  const area = await api('POST', '/v1/areas', { name: 'Support', webhookUrl: receiver.url, events: ['message.status'] });
  expect(area.status).toBe(201);
  receiver.secrets.push(area.body.secret);
  expect((await postWebhook(ingest.url, customerText(customer, 'wamid.STATUSORDER-first', 'hello'))).status).toBe(200);
  conv = await eventually(async () => (await db.pool.query<typeof conv>("SELECT conversation_id, channel_id, contact_id FROM messages WHERE wamid = 'wamid.STATUSORDER-first'")).rows[0], { what: 'the first message stored' });
  expect((await api('POST', `/v1/conversations/${conv.conversation_id}/assign`, { areaId: area.body.id })).status).toBe(200);
});
afterAll(async () => {
  await deliverer?.stop();
  await ingest?.stop();
  await receiver?.close();
  await db?.drop();
});

it('forwards statuses of one second stored in reverse order by separate batches as sent, delivered, read', async () => {
  const id = await reply('wamid.STATUSORDER-one');
  const at = Math.floor(Date.now() / 1000) + 1;
  for (const s of ['read', 'delivered', 'sent']) await storeStatus('wamid.STATUSORDER-one', s, at);
  expect((await db.pool.query("SELECT 1 FROM forward_events WHERE message_id = $1 AND status = 'pending'", [id])).rowCount).toBe(3);

  deliverer = await startApp(db, 'worker', env);
  await eventually(async () => forwarded(id).length >= 3, { what: 'three statuses forwarded' });
  expect(forwarded(id)).toEqual(['sent', 'delivered', 'read']);
  expect(receiver.delivered().every((x) => x.verified)).toBe(true);
  expect((await api('GET', `/v1/messages/${id}`)).body.status).toBe('read');
});

it('forwards a status that arrives after a higher one of the message already reached the area, carrying the message as it is now (read)', async () => {
  expect(deliverer).toBeDefined();
  const id = await reply('wamid.STATUSORDER-two');
  const at = Math.floor(Date.now() / 1000) + 1;
  await storeStatus('wamid.STATUSORDER-two', 'sent', at);
  await eventually(async () => forwarded(id).length === 1, { what: 'sent forwarded' });
  await storeStatus('wamid.STATUSORDER-two', 'read', at);
  await eventually(async () => forwarded(id).length === 2, { what: 'read forwarded' });
  // Meta's delivered of the same second, late: every event is delivered (at least once), and its
  // data.message shows the message's status now, the highest rank, as GET /v1/messages/:id does.
  await storeStatus('wamid.STATUSORDER-two', 'delivered', at);
  await eventually(async () => forwarded(id).length === 3, { what: 'the late delivered forwarded' });
  expect(forwarded(id)).toEqual(['sent', 'read', 'delivered']);
  const late = receiver.delivered().filter((x) => x.body.type === 'message.status' && (x.body.data.message as { id: number }).id === id).at(-1)!;
  const view = (await api('GET', `/v1/messages/${id}`)).body as { status: string };
  expect(view.status).toBe('read');
  expect((late.body.data.message as { status: string }).status).toBe('read');
  expect(late.verified).toBe(true);
});
