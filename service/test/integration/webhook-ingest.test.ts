// The front door against real Postgres and Redis: what is acked is stored, once.
import { describe, expect, it } from 'vitest';
import { API_TOKEN, PHONE_NUMBER_ID, VERIFY_TOKEN } from '../helpers/context.js';
import { appForFile, eventually, json, postWebhook } from '../helpers/app.js';
import { openSse } from '../helpers/events.js';
import { allTypeMessages, FROM } from '../helpers/meta-samples.js';

let seq = 0;
const wamid = () => `wamid.TEST${Date.now().toString(36)}${(seq++).toString(36).padStart(6, '0')}`;
const ts = (offset = 0) => String(1_760_000_000 + offset);

function change(value: Record<string, unknown>, phoneNumberId = PHONE_NUMBER_ID) {
  return { field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550001111', phone_number_id: phoneNumberId }, ...value } };
}
const envelope = (...entries: { id?: string; changes: unknown[] }[]) =>
  JSON.stringify({ object: 'whatsapp_business_account', entry: entries.map((e) => ({ id: e.id ?? '102290129340398', changes: e.changes })) });
const text = (from: string, id = wamid(), body = 'hello') => ({ from, id, timestamp: ts(), type: 'text', text: { body } });
const status = (id: string, st: string, t: number, extra: Record<string, unknown> = {}) => ({ id, status: st, timestamp: ts(t), recipient_id: '5511999990000', ...extra });

const stack = appForFile('all');


const count = async (sql: string, params: unknown[] = []) => Number((await stack.db.pool.query(sql, params)).rows[0].n);
const unreadOf = async (waId: string) => (await stack.db.pool.query('SELECT c.unread_count FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE k.wa_id = $1', [waId])).rows[0]?.unread_count as number | undefined;
const lastMessageOf = async (waId: string) => (await stack.db.pool.query('SELECT c.last_message_id, c.last_message_at, c.last_inbound_at FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE k.wa_id = $1', [waId])).rows[0];
/** A counter of this process's /metrics (0 before its first increment). */
async function metric(name: string): Promise<number> {
  const line = (await (await fetch(`${stack.app.url}/metrics`)).text()).split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}
/** Waits until the inbound queue has nothing waiting, running or delayed. */
async function settled(): Promise<void> {
  await eventually(async () => {
    const q = (await json(await fetch(`${stack.app.url}/readyz`))).queues.inbound as Record<string, number>;
    return (q.waiting ?? 0) + (q.active ?? 0) + (q.delayed ?? 0) + (q.prioritized ?? 0) === 0;
  }, { what: 'inbound queue drained' });
}

describe('GET /webhooks/whatsapp', () => {
  it('answers the challenge for the right token', async () => {
    const res = await fetch(`${stack.app.url}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=1158201444`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('1158201444');
  });
  it('refuses a wrong token with 403', async () => {
    const res = await fetch(`${stack.app.url}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1`);
    expect(res.status).toBe(403);
    expect((await json(res)).error.code).toBe('verification_failed');
  });
});

describe('POST /webhooks/whatsapp', () => {
  it('rejects a bad signature with 401 and stores nothing', async () => {
    const id = wamid();
    const body = envelope({ changes: [change({ messages: [text('5511900000001', id)] })] });
    expect((await postWebhook(stack.app.url, body, { secret: 'wrong-secret' })).status).toBe(401);
    expect((await postWebhook(stack.app.url, body, { signature: null })).status).toBe(401);
    const res = await postWebhook(stack.app.url, body, { signature: 'sha256=' + '0'.repeat(64) });
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).error.code).toBe('invalid_signature');
    await new Promise((r) => setTimeout(r, 300));
    expect(await count('SELECT count(*) AS n FROM messages WHERE wamid = $1', [id])).toBe(0);
    expect(await count("SELECT count(*) AS n FROM inbound_events WHERE payload::text LIKE '%' || $1 || '%'", [id])).toBe(0);
  });

  it('rejects a body over 3 MB with 413', async () => {
    const big = envelope({ changes: [change({ messages: [text('5511900000002', wamid(), 'x'.repeat(3 * 1024 * 1024))] })] });
    const res = await postWebhook(stack.app.url, big);
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).error.code).toBe('payload_too_large');
  });

  it.each([
    ['not JSON', '{"object": "whatsapp_business_account", '],
    ['another object', JSON.stringify({ object: 'page', entry: [] })],
    ['no entry array', JSON.stringify({ object: 'whatsapp_business_account' })],
    ['a JSON array', '[1,2]'],
  ])('rejects %s with 400', async (_n, body) => {
    const res = await postWebhook(stack.app.url, body);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).error.code).toBe('malformed_payload');
  });

  it('stores every entry, change, message and status of one payload', async () => {
    const ids = Array.from({ length: 9 }, () => wamid());
    const outbound = [wamid(), wamid()];
    const body = envelope(
      { changes: [change({ contacts: [{ profile: { name: 'Ana' }, wa_id: '5511900000010' }], messages: [text('5511900000010', ids[0]), text('5511900000010', ids[1]), text('5511900000010', ids[2])] })] },
      { changes: [change({ contacts: [{ profile: { name: 'Bruno' }, wa_id: '5511900000011' }], messages: [text('5511900000011', ids[3]), text('5511900000011', ids[4])] }), change({ statuses: [status(outbound[0]!, 'sent', 1), status(outbound[1]!, 'delivered', 2)] })] },
      { changes: [change({ contacts: [{ profile: { name: 'Caio' }, wa_id: '5511900000012' }], messages: ids.slice(5).map((id) => text('5511900000012', id)) })] },
    );
    expect((await postWebhook(stack.app.url, body)).status).toBe(200);
    await eventually(async () => (await count('SELECT count(*) AS n FROM messages WHERE wamid = ANY($1)', [ids])) === 9, { what: '9 messages' });
    expect(await count('SELECT count(*) AS n FROM message_statuses WHERE wamid = ANY($1)', [outbound])).toBe(2);
    const names = (await stack.db.pool.query("SELECT profile_name FROM contacts WHERE wa_id LIKE '55119000000%' ORDER BY wa_id")).rows.map((r) => r.profile_name);
    expect(names).toEqual(expect.arrayContaining(['Ana', 'Bruno', 'Caio']));
    const conv = await stack.db.pool.query('SELECT c.unread_count FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE k.wa_id = $1', ['5511900000012']);
    expect(conv.rows[0].unread_count).toBe(4);
  });

  it('stores one message of every type with its typed columns', async () => {
    const prefix = `wamid.ALL${Date.now()}.`;
    const all = allTypeMessages(prefix);
    const body = envelope({ changes: [change({ contacts: [{ profile: { name: 'Sheena Nelson' }, wa_id: FROM }], messages: all })] });
    expect((await postWebhook(stack.app.url, body)).status).toBe(200);
    await eventually(async () => (await count('SELECT count(*) AS n FROM messages WHERE wamid LIKE $1', [prefix + '%'])) === all.length, { what: 'all types stored' });
    const rows = new Map((await stack.db.pool.query('SELECT * FROM messages WHERE wamid LIKE $1', [prefix + '%'])).rows.map((r) => [r.wamid.slice(prefix.length), r]));
    expect(rows.get('image')).toMatchObject({ type: 'image', media_id: '1003383421387256', body: 'look' });
    expect(rows.get('doc')).toMatchObject({ media_filename: 'invoice.pdf' });
    expect(rows.get('location')).toMatchObject({ latitude: 37.483307, longitude: 122.148981 });
    expect(rows.get('unreact')).toMatchObject({ type: 'reaction', reaction_to_wamid: prefix + 'text', reaction_emoji: null });
    expect(rows.get('reply')).toMatchObject({ reply_to_wamid: prefix + 'previous', forwarded: true });
    expect(rows.get('referral')!.referral).toMatchObject({ source_type: 'ad' });
    expect(rows.get('list_reply')).toMatchObject({ interactive_reply_id: 'list-row-id' });
    expect(rows.get('text')!.raw).toMatchObject({ text: { body: 'Does it come in another color?' } });
  });

  it('stores a webhook delivered 5 times at once once: one row\'s worth of unread, metric and events', async () => {
    const id = wamid();
    const body = envelope({ changes: [change({ contacts: [{ profile: { name: 'Dora' }, wa_id: '5511900000020' }], messages: [text('5511900000020', id)] })] });
    // Earlier tests' messages still being stored would move the counter too (19 instead of 1 once, under load).
    await settled();
    const stored0 = await metric('wa_router_inbound_messages_stored_total');
    const sse = openSse(stack.app.url, `?access_token=${API_TOKEN}&types=message.created`);
    await sse.ready;
    try {
      const results = await Promise.all(Array.from({ length: 5 }, () => postWebhook(stack.app.url, body)));
      expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
      await eventually(async () => (await count('SELECT count(*) AS n FROM messages WHERE wamid = $1', [id])) === 1);
      await settled();
      expect(await unreadOf('5511900000020')).toBe(1);
      expect((await metric('wa_router_inbound_messages_stored_total')) - stored0).toBe(1);
      expect(sse.events.filter((e) => e.data.wamid === id)).toHaveLength(1);
    } finally {
      await sse.close();
    }
  });

  // Meta's real pattern: the copy comes back later (its 200 was lost or slow), after the first was
  // stored, and is not always the same bytes; only the wamid says it is the same message.
  it('a redelivery after the first copy was stored, byte-identical or re-serialized, changes nothing', async () => {
    const id = wamid();
    const value = { contacts: [{ profile: { name: 'Rita' }, wa_id: '5511900000021' }], messages: [text('5511900000021', id, 'only once')] };
    const body = envelope({ changes: [change(value)] });
    const sse = openSse(stack.app.url, `?access_token=${API_TOKEN}`);
    await sse.ready;
    try {
      expect((await postWebhook(stack.app.url, body)).status).toBe(200);
      await eventually(async () => (await unreadOf('5511900000021')) === 1, { what: 'first copy stored' });
      await settled();
      const stored0 = await metric('wa_router_inbound_messages_stored_total');
      const duplicates0 = await metric('wa_router_duplicate_events_total');
      const conversation0 = await lastMessageOf('5511900000021');

      expect((await postWebhook(stack.app.url, body)).status).toBe(200);
      // Same content, other bytes: keys in another order and indented, as a re-serializing sender does.
      const reserialized = JSON.stringify({ entry: [{ changes: [{ value: { ...value, metadata: { phone_number_id: PHONE_NUMBER_ID, display_phone_number: '15550001111' }, messaging_product: 'whatsapp' }, field: 'messages' }], id: '102290129340398' }], object: 'whatsapp_business_account' }, null, 2);
      expect(reserialized).not.toBe(body);
      expect((await postWebhook(stack.app.url, reserialized)).status).toBe(200);
      // The identical copy is known by its body hash; the other one is a new event, stored as such.
      await eventually(async () => (await metric('wa_router_duplicate_events_total')) - duplicates0 === 1, { what: 'identical copy seen' });
      await eventually(async () => (await count("SELECT count(*) AS n FROM inbound_events WHERE payload::text LIKE '%' || $1 || '%'", [id])) === 2, { what: 're-serialized copy processed' });
      await settled();

      expect(await unreadOf('5511900000021')).toBe(1);
      expect((await metric('wa_router_inbound_messages_stored_total')) - stored0).toBe(0);
      expect(await lastMessageOf('5511900000021')).toEqual(conversation0);
      expect(sse.events.filter((e) => e.event === 'message.created' && e.data.wamid === id)).toHaveLength(1);
    } finally {
      await sse.close();
    }
  });
});

describe('statuses', () => {
  // An outbound message lands the way the WhatsApp Business app's messages do: an echo webhook
  // (smb_message_echoes) through the normal path, not planted by SQL.
  const echoBody = (id: string) => JSON.stringify({ object: 'whatsapp_business_account', entry: [{ id: '102290129340398', changes: [{ field: 'smb_message_echoes', value: {
    messaging_product: 'whatsapp', metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID },
    message_echoes: [{ from: '15550001111', to: '5511999990000', id, timestamp: ts(1), type: 'text', text: { body: 'hi' } }],
  } }] }] });
  async function landOutbound(id: string): Promise<void> {
    expect((await postWebhook(stack.app.url, echoBody(id))).status).toBe(200);
    await eventually(async () => (await count("SELECT count(*) AS n FROM messages WHERE wamid = $1 AND direction = 'outbound'", [id])) === 1, { what: 'echo stored' });
  }
  const statusOf = async (id: string) => (await stack.db.pool.query('SELECT status, sent_at, delivered_at, read_at, failed_at, error_code, error_title FROM messages WHERE wamid = $1', [id])).rows[0];

  it('keeps read when delivered arrives after it', async () => {
    const id = wamid();
    await landOutbound(id);
    expect((await postWebhook(stack.app.url, envelope({ changes: [change({ statuses: [status(id, 'read', 20)] })] }))).status).toBe(200);
    await eventually(async () => (await statusOf(id))?.status === 'read');
    expect((await postWebhook(stack.app.url, envelope({ changes: [change({ statuses: [status(id, 'delivered', 10)] })] }))).status).toBe(200);
    await eventually(async () => (await statusOf(id))?.delivered_at !== null, { what: 'delivered_at recorded' });
    const s = await statusOf(id);
    expect(s.status).toBe('read');
    expect(s.delivered_at.getTime()).toBe(1_760_000_010_000);
    expect(s.read_at.getTime()).toBe(1_760_000_020_000);
  });

  it('applies a status that arrived before its message', async () => {
    const id = wamid();
    expect((await postWebhook(stack.app.url, envelope({ changes: [change({ statuses: [status(id, 'delivered', 5), status(id, 'sent', 3)] })] }))).status).toBe(200);
    await eventually(async () => (await count('SELECT count(*) AS n FROM message_statuses WHERE wamid = $1', [id])) === 2);
    // The message lands afterwards; nothing else arrives: the kept history applies on landing.
    await landOutbound(id);
    await eventually(async () => (await statusOf(id))?.status === 'delivered', { what: 'delivered applied' });
    const s = await statusOf(id);
    expect(s.sent_at.getTime()).toBe(1_760_000_003_000);
    expect(s.delivered_at.getTime()).toBe(1_760_000_005_000);
    expect(await count('SELECT count(*) AS n FROM message_statuses WHERE wamid = $1', [id])).toBe(2);
  });

  it('keeps failed terminal with its error', async () => {
    const id = wamid();
    await landOutbound(id);
    const failed = status(id, 'failed', 7, { errors: [{ code: 131047, title: 'Re-engagement message', message: 'Re-engagement message', error_data: { details: 'Message failed to send because more than 24 hours have passed' } }] });
    expect((await postWebhook(stack.app.url, envelope({ changes: [change({ statuses: [status(id, 'sent', 6), failed] })] }))).status).toBe(200);
    await eventually(async () => (await statusOf(id))?.status === 'failed');
    expect((await postWebhook(stack.app.url, envelope({ changes: [change({ statuses: [status(id, 'delivered', 8)] })] }))).status).toBe(200);
    await eventually(async () => (await count('SELECT count(*) AS n FROM message_statuses WHERE wamid = $1', [id])) === 3);
    const s = await statusOf(id);
    expect(s.status).toBe('failed');
    expect(s.error_code).toBe(131047);
    expect(s.error_title).toBe('Re-engagement message');
  });
});

describe('routing and the operator API', () => {
  it('keeps an event for an unknown phone_number_id, marked unrouted', async () => {
    const id = wamid();
    const body = envelope({ changes: [change({ messages: [text('5511900000030', id)] }, '999000999000')] });
    expect((await postWebhook(stack.app.url, body)).status).toBe(200);
    await eventually(async () => (await count("SELECT count(*) AS n FROM inbound_events WHERE unrouted AND '999000999000' = ANY(phone_number_ids)")) === 1);
    expect(await count('SELECT count(*) AS n FROM messages WHERE wamid = $1', [id])).toBe(0);
    const metrics = await (await fetch(`${stack.app.url}/metrics`)).text();
    expect(metrics).toMatch(/wa_router_unrouted_events_total 1/);
  });

  it('traces a message by wamid and by id, with its statuses', async () => {
    const id = wamid();
    await postWebhook(stack.app.url, envelope({ changes: [change({ contacts: [{ profile: { name: 'Eva' }, wa_id: '5511900000040' }], messages: [text('5511900000040', id, 'olá')] })] }));
    const auth = { authorization: 'Bearer test-api-token-0123456789abcdef' };
    const byWamid = await eventually(async () => {
      const r = await fetch(`${stack.app.url}/v1/messages?wamid=${encodeURIComponent(id)}`, { headers: auth });
      return r.status === 200 ? json(r) : null;
    });
    expect(byWamid).toMatchObject({ wamid: id, direction: 'inbound', type: 'text', body: 'olá', contact: { waId: '5511900000040', profileName: 'Eva' } });
    const byId = await json(await fetch(`${stack.app.url}/v1/messages/${byWamid.id}`, { headers: auth }));
    expect(byId.wamid).toBe(id);
    expect((await fetch(`${stack.app.url}/v1/messages/${byWamid.id}`)).status).toBe(401);
    expect((await fetch(`${stack.app.url}/v1/messages/999999999`, { headers: auth })).status).toBe(404);
  });

  it('reports readiness with dependencies and queue depths', async () => {
    const r = await fetch(`${stack.app.url}/readyz`);
    expect(r.status).toBe(200);
    const body = await json(r);
    expect(body.checks.postgres.ok).toBe(true);
    expect(body.checks.redis.ok).toBe(true);
    expect(body.queues.inbound).toHaveProperty('waiting');
  });
});
