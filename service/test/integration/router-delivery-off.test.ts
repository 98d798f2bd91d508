// FORWARD_DELIVERY=false: a worker that stores and routes inbound messages queues their events
// for the area but delivers none; a worker with delivery on delivers them, signed.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { API_TOKEN, createTestDb, uniquePrefix, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { customerText } from '../helpers/meta-samples.js';

let db: TestDb;
let ingest: RunningApp;
let deliverer: RunningApp | undefined;
let receiver: Receiver;
const env = { QUEUE_PREFIX: uniquePrefix(), FORWARD_ALLOW_PRIVATE: 'true', FORWARD_POLL_MS: '20', FORWARD_ORDER_SETTLE_MS: '0' };
const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };
const api = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${ingest.url}${path}`, { method, headers: auth, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: await json(res) };
};

let seq = 0;
const inbound = (from: string, text: string) => customerText(from, `wamid.DELIVERYOFF${Date.now().toString(36)}${seq++}`, text);

beforeAll(async () => {
  db = await createTestDb();
  receiver = await startReceiver();
  ingest = await startApp(db, 'all', { ...env, FORWARD_DELIVERY: 'false' });
});
afterAll(async () => {
  await deliverer?.stop();
  await ingest?.stop();
  await receiver?.close();
  await db?.drop();
});

it('queues an assigned conversation’s messages without delivering them; a delivering worker sends them', async () => {
  const area = await api('POST', '/v1/areas', { name: 'Support', webhookUrl: receiver.url, events: ['message.received'] });
  expect(area.status).toBe(201);
  receiver.secrets.push(area.body.secret);
  const who = '5511933330001';
  expect((await postWebhook(ingest.url, inbound(who, 'first'))).status).toBe(200);
  const conv = await eventually(async () => (await db.pool.query('SELECT cv.id FROM conversations cv JOIN contacts c ON c.id = cv.contact_id WHERE c.wa_id = $1', [who])).rows[0]?.id as number | undefined, { what: 'conversation' });
  expect((await api('POST', `/v1/conversations/${conv}/assign`, { areaId: area.body.id })).status).toBe(200);
  expect((await postWebhook(ingest.url, inbound(who, 'after assignment'))).status).toBe(200);
  await eventually(async () => (await db.pool.query("SELECT 1 FROM forward_events WHERE conversation_id = $1 AND type = 'message.received' AND status = 'pending'", [conv])).rowCount === 1, { what: 'the queued event' });
  // Well past the poll and the settle time: a delivering worker would have sent it by now.
  await new Promise((r) => setTimeout(r, 1_500));
  expect(receiver.received).toHaveLength(0);

  deliverer = await startApp(db, 'worker', env);
  const got = await eventually(async () => {
    const d = receiver.delivered().filter((x) => x.body.type === 'message.received');
    return d.length > 0 ? d : null;
  }, { what: 'the delivery' });
  expect(got.map((x) => (x.body.data.message as { body: string }).body)).toEqual(['after assignment']);
  expect(got[0]!.verified).toBe(true);
});
