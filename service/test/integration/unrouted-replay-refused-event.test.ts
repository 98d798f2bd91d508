// Regression (issue 14 review, defect 1): a page of replayed unrouted events was stored with one
// statement, so one event the database refuses once routed made every replay and every sweep fail,
// and its valid neighbours stayed out of the inbox for good. Now the page falls back to storing
// events one by one; the refused one goes to the dead-letter queue and leaves the sweeps.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { contact, inboundEnvelope, textMessage } from '../fixtures/payloads.js';
import { API_TOKEN, createTestDb, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';

const NEW_NUMBER = '109999999999077';
const REFUSED = 'wamid.REPLAY-REFUSED';
let db: TestDb;
let app: RunningApp;
const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };

beforeAll(async () => {
  db = await createTestDb();
  // The parser now rejects every input known to make Postgres refuse a message, so a trigger
  // stands in for the next such input: a real refusal, raised only once the event is routed.
  await db.pool.query(`
    CREATE FUNCTION refuse_one_message() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.wamid = '${REFUSED}' THEN RAISE EXCEPTION 'message refused'; END IF; RETURN NEW; END $$;
    CREATE TRIGGER refuse_one_message BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_one_message();`);
  app = await startApp(db, 'all', { INBOUND_ATTEMPTS: '1' });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

const unrouted = async () => Number((await db.pool.query('SELECT count(*) AS n FROM inbound_events WHERE unrouted')).rows[0].n);

it('replays the valid unrouted events beside one the database refuses, and takes that one out of the sweeps', async () => {
  const valid: string[] = [];
  for (let i = 0; i < 5; i++) {
    const from = `55119444400${10 + i}`;
    valid.push(`wamid.REPLAY-OK-${i}`);
    const body = inboundEnvelope([textMessage({ from, id: valid[i]! })], { phoneNumberId: NEW_NUMBER, contacts: [contact({ waId: from })] });
    expect((await postWebhook(app.url, JSON.stringify(body))).status).toBe(200);
  }
  const bad = inboundEnvelope([textMessage({ from: '5511944440099', id: REFUSED })], { phoneNumberId: NEW_NUMBER, contacts: [contact({ waId: '5511944440099' })] });
  expect((await postWebhook(app.url, JSON.stringify(bad))).status).toBe(200);
  await eventually(async () => (await unrouted()) === 6, { what: 'six events kept unrouted' });

  const created = await fetch(`${app.url}/v1/channels`, { method: 'POST', headers: auth, body: JSON.stringify({ phoneNumberId: NEW_NUMBER, accessToken: 't' }) });
  expect(created.status).toBe(201);
  const channel = await json(created);
  const inbox = async () => (await json(await fetch(`${app.url}/v1/conversations?limit=50&channelId=${channel.id}`, { headers: auth }))).data as { unreadCount: number; contact: { waId: string } }[];
  const list = await eventually(async () => {
    const l = await inbox();
    return l.filter((c) => c.unreadCount > 0).length === 5 ? l : null;
  }, { timeoutMs: 20_000, intervalMs: 200, what: 'the five valid events in the inbox' });
  expect(list.every((c) => c.contact.waId !== '5511944440099' || c.unreadCount === 0)).toBe(true);
  // Out of the sweeps, and dead-lettered with its reason rather than dropped silently.
  await eventually(async () => (await unrouted()) === 0, { what: 'the refused event out of the sweeps' });
  const metrics = await (await fetch(`${app.url}/metrics`)).text();
  expect(Number(/^wa_router_isolated_events_total (\d+)/m.exec(metrics)?.[1] ?? 0)).toBeGreaterThanOrEqual(1);
  expect((await db.pool.query('SELECT 1 FROM messages WHERE wamid = $1', [REFUSED])).rowCount).toBe(0);
});
