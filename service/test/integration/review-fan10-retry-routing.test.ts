// Review proof (fan10): a webhook whose status statement fails after its messages' statement
// committed. The retry finds the messages stored already (no new rows): the realtime event went
// out at the commit (the claimed fix), but the router hears no new message on the retry either.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { openSse } from '../helpers/events.js';

let db: TestDb;
let sim: GraphSimulator;
let app: RunningApp;
let receiver: Receiver;
const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };
const api = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${app.url}${path}`, { method, headers: auth, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: res.status === 204 ? null : await json(res) };
};

beforeAll(async () => {
  db = await createTestDb();
  sim = await startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 1, statusDelayMs: 10, deliverAndRead: false } });
  app = await startApp(db, 'all', { GRAPH_API_BASE_URL: sim.url, FORWARD_ALLOW_PRIVATE: 'true', FORWARD_POLL_MS: '20' });
  receiver = await startReceiver();
  const channelId = (await db.pool.query('SELECT id FROM channels LIMIT 1')).rows[0].id;
  const a = await api('POST', '/v1/areas', { name: 'Ventas', webhookUrl: receiver.url });
  const b = await api('POST', '/v1/areas', { name: 'Soporte', webhookUrl: receiver.url });
  expect(a.status).toBe(201);
  const saved = await api('PUT', `/v1/channels/${channelId}/menu`, { greeting: 'Hello!', options: [{ id: 'sales', title: 'Ventas', areaId: a.body.id }, { id: 'help', title: 'Soporte', areaId: b.body.id }], timeoutSeconds: 60, maxInvalid: 3 });
  expect(saved.status).toBe(200);
});
afterAll(async () => {
  await app?.stop();
  await sim?.close();
  await receiver?.close();
  await db?.drop();
});

const change = (value: Record<string, unknown>) => ({ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID }, ...value } });
const webhook = (...changes: ReturnType<typeof change>[]) => JSON.stringify({ object: 'whatsapp_business_account', entry: [{ id: '102290129340398', changes }] });
const message = (from: string, id: string, at: number) => change({ contacts: [{ profile: { name: 'Customer' }, wa_id: from }], messages: [{ from, id, timestamp: String(at), type: 'text', text: { body: 'hello' } }] });

it('REVIEW fan10: a batch retried after its status statement failed still gets its new customer the menu', async () => {
  const now = Math.floor(Date.now() / 1000);
  // An earlier customer, whose conversation holds one of our replies (the status's target).
  expect(await postWebhook(app.url, webhook(message('5511944440001', 'wamid.RV-first', now - 60)))).toMatchObject({ status: 200 });
  await eventually(async () => sim.sent.some((s) => s.to === '5511944440001'), { what: 'the first customer greeted (the router works)' });
  const conv = await eventually(async () => (await db.pool.query<{ conversation_id: number; channel_id: number; contact_id: number }>("SELECT conversation_id, channel_id, contact_id FROM messages WHERE wamid = 'wamid.RV-first'")).rows[0], { what: 'first message stored' });
  await db.pool.query(
    `INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, source, type, body, raw, wa_timestamp, status)
     VALUES ('wamid.RV-reply', $1, $2, $3, 'outbound', 'api', 'text', 'hi', '{}', to_timestamp($4), 'sent')`,
    [conv.channel_id, conv.conversation_id, conv.contact_id, now - 30],
  );
  const sse = openSse(app.url, `?access_token=${API_TOKEN}&types=message.created`);
  expect((await sse.ready).status).toBe(200);
  const locker = await db.pool.connect();
  try {
    await locker.query('BEGIN');
    await locker.query("SELECT 1 FROM messages WHERE wamid = 'wamid.RV-reply' FOR NO KEY UPDATE");
    const delivered = change({ statuses: [{ id: 'wamid.RV-reply', status: 'delivered', timestamp: String(now - 10), recipient_id: '5511944440001' }] });
    expect(await postWebhook(app.url, webhook(message('5511944440002', 'wamid.RV-new', now - 5), delivered))).toMatchObject({ status: 200 });
    // The status statement waits on the lock; its connection is then cut (a failover, a PgBouncer restart).
    const pid = await eventually(async () => (await db.pool.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE messages m SET%'")).rows[0]?.pid, { what: 'status statement waiting' });
    await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
  } finally {
    await locker.query('COMMIT');
    locker.release();
  }
  // The job is retried and completes: the status lands.
  await eventually(async () => (await db.pool.query("SELECT status FROM messages WHERE wamid = 'wamid.RV-reply'")).rows[0]?.status === 'delivered', { what: 'the retried batch stored the status', timeoutMs: 20_000 });
  // The realtime event: once (published at the messages' commit, before the failure).
  await eventually(async () => sse.events.some((e) => e.data.wamid === 'wamid.RV-new'), { what: 'message.created' });
  await new Promise((r) => setTimeout(r, 500));
  expect(sse.events.filter((e) => e.data.wamid === 'wamid.RV-new')).toHaveLength(1);
  await sse.close();
  // What the customer sees: the menu, as the first customer got it.
  await eventually(async () => sim.sent.some((s) => s.to === '5511944440002'), { what: 'the new customer greeted with the menu', timeoutMs: 15_000 });
});
