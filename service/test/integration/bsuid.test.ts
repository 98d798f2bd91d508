// Business-scoped user ids (Meta, 2026) end to end, real Postgres and Redis, the Graph API
// simulator: a user with a username writes without a phone number, later with one; the business
// answers them by BSUID.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';

let db: TestDb;
let sim: GraphSimulator;
let app: RunningApp;
const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };

let seq = 0;
const wamid = () => `wamid.BSUID${Date.now().toString(36)}${(seq++).toString(36).padStart(4, '0')}`;
const ts = () => String(Math.floor(Date.now() / 1000));
const webhook = (value: Record<string, unknown>) =>
  JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID }, ...value } }] }],
  });

/** What Meta sends for a user with a username: the BSUID, and the phone number only when known. */
function inbound(opts: { userId: string; phone?: string; username?: string; name?: string; id?: string }): string {
  const contact: Record<string, unknown> = { profile: { name: opts.name ?? 'Sheena Nelson', ...(opts.username ? { username: opts.username } : {}) }, user_id: opts.userId };
  const message: Record<string, unknown> = { from_user_id: opts.userId, id: opts.id ?? wamid(), timestamp: ts(), type: 'text', text: { body: 'Hi, I found you on Instagram' } };
  if (opts.phone) {
    contact.wa_id = opts.phone;
    message.from = opts.phone;
  }
  return webhook({ contacts: [contact], messages: [message] });
}

const messageRow = (id: string) => eventually(async () => (await db.pool.query('SELECT m.conversation_id, m.contact_id, c.wa_id, c.user_id, c.username, c.profile_name FROM messages m JOIN contacts c ON c.id = m.contact_id WHERE m.wamid = $1', [id])).rows[0], { what: id });

beforeAll(async () => {
  db = await createTestDb();
  sim = await startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 2, jitterMs: 2, statusDelayMs: 10 } });
  app = await startApp(db, 'all', { GRAPH_API_BASE_URL: sim.url, OUTBOUND_BACKOFF_MS: '50' });
  sim.configure({ webhookUrl: `${app.url}/webhooks/whatsapp` });
});
afterAll(async () => {
  await app?.stop();
  await sim?.close();
  await db?.drop();
});

describe('a user with a username', () => {
  it('is stored under the BSUID when Meta withholds the number, and moved to the number, conversation and all, when it comes', async () => {
    const userId = 'US.13491208655302741918';
    const first = wamid();
    expect((await postWebhook(app.url, inbound({ userId, username: '@sheena.nelson', id: first }))).status).toBe(200);
    const a = await messageRow(first);
    expect(a).toMatchObject({ wa_id: userId, user_id: userId, username: '@sheena.nelson', profile_name: 'Sheena Nelson' });

    const second = wamid();
    expect((await postWebhook(app.url, inbound({ userId, phone: '16505551234', id: second }))).status).toBe(200);
    const b = await messageRow(second);
    expect(b).toMatchObject({ wa_id: '16505551234', user_id: userId, username: '@sheena.nelson', conversation_id: a.conversation_id, contact_id: a.contact_id });
    const contacts = await db.pool.query('SELECT count(*)::int AS n FROM contacts WHERE user_id = $1 OR wa_id = $1', [userId]);
    expect(contacts.rows[0].n).toBe(1);

    const read = await json(await fetch(`${app.url}/v1/messages?wamid=${encodeURIComponent(first)}`, { headers: auth }));
    expect(read.contact).toMatchObject({ waId: '16505551234', userId, username: '@sheena.nelson', profileName: 'Sheena Nelson' });
  });

  it('keeps a known customer on the phone number and learns their BSUID', async () => {
    const phone = '16505550000';
    const before = wamid();
    await postWebhook(app.url, webhook({ contacts: [{ profile: { name: 'Old Customer' }, wa_id: phone }], messages: [{ from: phone, id: before, timestamp: ts(), type: 'text', text: { body: 'before 2026' } }] }));
    const a = await messageRow(before);
    const after = wamid();
    await postWebhook(app.url, inbound({ userId: 'US.99', phone, name: 'Old Customer', id: after }));
    const b = await messageRow(after);
    expect(b).toMatchObject({ wa_id: phone, user_id: 'US.99', conversation_id: a.conversation_id });
  });
});

describe('sending to a BSUID', () => {
  it('sends Meta `recipient` instead of `to`, in the conversation of the contact that has that BSUID, and follows its statuses', async () => {
    const userId = 'US.555000111';
    const id = wamid();
    await postWebhook(app.url, inbound({ userId, id }));
    const inboundRow = await messageRow(id);
    const res = await fetch(`${app.url}/v1/messages`, { method: 'POST', headers: auth, body: JSON.stringify({ recipient: userId, type: 'text', text: { body: 'Thanks for writing!' } }) });
    expect(res.status).toBe(202);
    const { id: messageId } = await json(res);
    const m = await eventually(async () => {
      const v = await json(await fetch(`${app.url}/v1/messages/${messageId}`, { headers: auth }));
      return v.status === 'read' ? v : null;
    }, { what: 'read' });
    const sent = sim.sent.find((s) => s.wamid === m.wamid)!;
    expect(sent.body).toMatchObject({ recipient: userId, type: 'text' });
    expect(sent.body).not.toHaveProperty('to');
    const row = await db.pool.query('SELECT conversation_id FROM messages WHERE id = $1', [messageId]);
    expect(row.rows[0].conversation_id).toBe(inboundRow.conversation_id);
    expect(m.statuses[0].recipientId).toBe(userId);
  });

  it('sends to the number instead when the BSUID belongs to a contact whose number is known', async () => {
    const id = wamid();
    await postWebhook(app.url, inbound({ userId: 'US.777', phone: '16505557777', id }));
    const conv = (await messageRow(id)).conversation_id;
    const res = await fetch(`${app.url}/v1/messages`, { method: 'POST', headers: auth, body: JSON.stringify({ recipient: 'US.777', type: 'text', text: { body: 'by number' } }) });
    const { id: messageId } = await json(res);
    const sent = await eventually(async () => sim.sent.find((s) => (s.body as { text?: { body?: string } }).text?.body === 'by number'));
    expect(sent.body).toMatchObject({ to: '16505557777' });
    expect(sent.body).not.toHaveProperty('recipient');
    expect((await db.pool.query('SELECT conversation_id FROM messages WHERE id = $1', [messageId])).rows[0].conversation_id).toBe(conv);
  });

  it('takes a BSUID given as `to` too, and refuses what is neither a number nor a BSUID', async () => {
    const ok = await fetch(`${app.url}/v1/messages`, { method: 'POST', headers: auth, body: JSON.stringify({ to: 'BR.77aa', type: 'text', text: { body: 'oi' } }) });
    expect(ok.status).toBe(202);
    const { id } = await json(ok);
    await eventually(async () => sim.sent.find((s) => (s.body as { recipient?: string }).recipient === 'BR.77aa' && s.byUserId), { what: 'sent by recipient' });
    const row = await db.pool.query('SELECT c.wa_id, c.user_id FROM messages m JOIN contacts c ON c.id = m.contact_id WHERE m.id = $1', [id]);
    expect(row.rows[0]).toEqual({ wa_id: 'BR.77aa', user_id: 'BR.77aa' });

    for (const body of [{ type: 'text', text: { body: 'x' } }, { to: 'someone', type: 'text', text: { body: 'x' } }, { recipient: '16505551234', type: 'text', text: { body: 'x' } }]) {
      const bad = await fetch(`${app.url}/v1/messages`, { method: 'POST', headers: auth, body: JSON.stringify(body) });
      expect(bad.status).toBe(400);
      expect((await json(bad)).error.code).toBe('invalid_message');
    }
  });

  it('fails a message Meta refuses for a BSUID (131062) with a hint to use the number', async () => {
    sim.configure({ forcedErrors: { 'US.4242': 131062 } });
    const res = await fetch(`${app.url}/v1/messages`, { method: 'POST', headers: auth, body: JSON.stringify({ recipient: 'US.4242', type: 'template', template: { name: 'otp', language: { code: 'en_US' } } }) });
    const { id } = await json(res);
    const m = await eventually(async () => {
      const v = await json(await fetch(`${app.url}/v1/messages/${id}`, { headers: auth }));
      return v.status === 'failed' ? v : null;
    }, { what: 'failed' });
    expect(JSON.stringify(m)).toContain('131062');
    expect(JSON.stringify(m)).toMatch(/phone number/);
    sim.configure({ forcedErrors: {} });
  });
});

describe('a customer who changes number or BSUID', () => {
  const system = (from: string, sys: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    webhook({ messages: [{ from, id: wamid(), timestamp: ts(), type: 'system', system: { body: 'User changed', ...sys }, ...extra }] });

  it('keeps the conversation and moves the contact to the new number (user_changed_number)', async () => {
    const before = wamid();
    await postWebhook(app.url, webhook({ contacts: [{ profile: { name: 'Mover' }, wa_id: '16505551001' }], messages: [{ from: '16505551001', id: before, timestamp: ts(), type: 'text', text: { body: 'old number' } }] }));
    const a = await messageRow(before);
    expect((await postWebhook(app.url, system('16505551001', { wa_id: '16505551002', type: 'user_changed_number' }))).status).toBe(200);
    await eventually(async () => (await db.pool.query('SELECT 1 FROM contacts WHERE id = $1 AND wa_id = $2', [a.contact_id, '16505551002'])).rowCount === 1, { what: 're-keyed' });
    const after = wamid();
    await postWebhook(app.url, webhook({ contacts: [{ profile: { name: 'Mover' }, wa_id: '16505551002' }], messages: [{ from: '16505551002', id: after, timestamp: ts(), type: 'text', text: { body: 'new number' } }] }));
    expect(await messageRow(after)).toMatchObject({ conversation_id: a.conversation_id, wa_id: '16505551002' });
    // The inbox's search follows the contact to its new number.
    const search = async (q: string) => (await json(await fetch(`${app.url}/v1/conversations?q=${q}`, { headers: auth }))).data.map((c: { id: number }) => c.id);
    expect(await search('16505551002')).toEqual([Number(a.conversation_id)]);
    expect(await search('16505551001')).toEqual([]);
  });

  it('learns the new BSUID (user_changed_user_id), re-keying a contact known only by it', async () => {
    const first = wamid();
    await postWebhook(app.url, inbound({ userId: 'US.OLD1', id: first }));
    const a = await messageRow(first);
    await postWebhook(app.url, system('', { user_id: 'US.NEW1', type: 'user_changed_user_id' }, { from: undefined, from_user_id: 'US.OLD1' }));
    await eventually(async () => (await db.pool.query('SELECT 1 FROM contacts WHERE id = $1 AND wa_id = $2 AND user_id = $2', [a.contact_id, 'US.NEW1'])).rowCount === 1, { what: 'new BSUID' });
  });
});
