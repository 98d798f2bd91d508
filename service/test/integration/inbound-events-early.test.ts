// A batch's new messages reach realtime clients as soon as their rows commit: a status in the
// same webhook, whose statement waits (here on a row lock the test holds), must not hold them back.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { API_TOKEN, createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { eventually, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { openSse } from '../helpers/events.js';

let db: TestDb;
let app: RunningApp;

beforeAll(async () => {
  db = await createTestDb();
  app = await startApp(db, 'all');
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

const change = (value: Record<string, unknown>) => ({ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID }, ...value } });
const webhook = (...changes: ReturnType<typeof change>[]) => JSON.stringify({ object: 'whatsapp_business_account', entry: [{ id: '102290129340398', changes }] });
const message = (from: string, id: string, at: number) => change({ contacts: [{ profile: { name: 'Customer' }, wa_id: from }], messages: [{ from, id, timestamp: String(at), type: 'text', text: { body: 'hello' } }] });

it('publishes message.created at the messages\' commit, before the batch\'s status statement is done', async () => {
  const now = Math.floor(Date.now() / 1000);
  expect((await postWebhook(app.url, webhook(message('5511955550001', 'wamid.EE-first', now - 60))))).toMatchObject({ status: 200 });
  const conv = await eventually(async () => (await db.pool.query<{ conversation_id: number; channel_id: number; contact_id: number }>("SELECT conversation_id, channel_id, contact_id FROM messages WHERE wamid = 'wamid.EE-first'")).rows[0], { what: 'the first message stored' });
  await db.pool.query(
    `INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, source, type, body, raw, wa_timestamp, status)
     VALUES ('wamid.EE-reply', $1, $2, $3, 'outbound', 'api', 'text', 'how can we help?', '{}', to_timestamp($4), 'sent')`,
    [conv.channel_id, conv.conversation_id, conv.contact_id, now - 30],
  );
  const sse = openSse(app.url, `?access_token=${API_TOKEN}&types=message.created,message.status`);
  expect((await sse.ready).status).toBe(200);
  const locker = await db.pool.connect();
  try {
    // The status's UPDATE of the reply waits on this lock; the batch's inserts do not.
    await locker.query('BEGIN');
    await locker.query("SELECT 1 FROM messages WHERE wamid = 'wamid.EE-reply' FOR NO KEY UPDATE");
    const delivered = change({ statuses: [{ id: 'wamid.EE-reply', status: 'delivered', timestamp: String(now - 10), recipient_id: '5511955550001' }] });
    expect((await postWebhook(app.url, webhook(message('5511955550002', 'wamid.EE-other', now - 5), delivered)))).toMatchObject({ status: 200 });
    await eventually(async () => sse.events.find((e) => e.event === 'message.created' && e.data.wamid === 'wamid.EE-other'), { what: 'message.created while the status waits' });
    const waiting = await db.pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE messages m SET%'");
    expect(waiting.rows[0].n).toBe(1);
    expect(sse.events.filter((e) => e.event === 'message.status')).toEqual([]);
    await locker.query('COMMIT');
    const status = await eventually(async () => sse.events.find((e) => e.event === 'message.status' && e.data.wamid === 'wamid.EE-reply'), { what: 'the status after the lock' });
    expect(status.data.status).toBe('delivered');
  } finally {
    locker.release();
    await sse.close();
  }
});
