// Scoped API tokens as an integrator meets them, over HTTP against real Postgres and Redis: the
// token shown once and kept hashed, 403 for a missing scope, revocation seen at once by two web
// processes (and their open event streams), and a token limited to an area that neither reads,
// writes nor hears of another area's conversation.
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, uniquePrefix, type TestDb } from '../helpers/context.js';
import { eventually, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { openSse, type SseClient } from '../helpers/events.js';

let db: TestDb;
let sim: GraphSimulator;
let app: RunningApp;
/** A second web process on the same database and Redis, with a short events heartbeat. */
let web2: RunningApp;
const prefix = uniquePrefix();

async function call(base: string, token: string | null, method: string, path: string, body?: unknown) {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }) };
  const res = await fetch(`${base}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  return { status: res.status, text, body: text ? JSON.parse(text) : null };
}
const admin = (method: string, path: string, body?: unknown) => call(app.url, API_TOKEN, method, path, body);
async function mint(body: Record<string, unknown>): Promise<{ id: number; token: string }> {
  const r = await admin('POST', '/v1/tokens', body);
  expect(r.status, r.text).toBe(201);
  return r.body;
}

let seq = 0;
const base = 1_780_000_000;
function inbound(from: string, at: number): string {
  return JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
      messaging_product: 'whatsapp',
      metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID },
      contacts: [{ profile: { name: `Customer ${from.slice(-2)}` }, wa_id: from }],
      messages: [{ from, id: `wamid.TOK${Date.now().toString(36)}${(seq++).toString(36).padStart(4, '0')}`, timestamp: String(base + at), type: 'text', text: { body: `hi ${at}` } }],
    } }] }],
  });
}
async function write(from: string, at: number): Promise<number> {
  expect((await postWebhook(app.url, inbound(from, at))).status).toBe(200);
  return eventually(async () => (await db.pool.query<{ id: number }>(`SELECT cv.id FROM conversations cv JOIN contacts c ON c.id = cv.contact_id JOIN messages m ON m.conversation_id = cv.id WHERE c.wa_id = $1 AND m.body = $2`, [from, `hi ${at}`])).rows[0]?.id, { what: `message from ${from}` });
}

/** Waits until `n` web processes hold their events subscription: a stream's first event may otherwise be published before it. */
async function subscribed(prefix: string, n: number): Promise<void> {
  const redis = new Redis(inject('redisUrl'));
  try {
    await eventually(async () => ((await redis.pubsub('NUMSUB', `${prefix}:events`)) as [string, number])[1] >= n, { what: 'events subscriptions' });
  } finally {
    redis.disconnect();
  }
}

beforeAll(async () => {
  db = await createTestDb();
  sim = await startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 2, jitterMs: 2, statusDelayMs: 10 } });
  // One attempt: a failing send is given up at once (the exhausted path of its status).
  const env = { GRAPH_API_BASE_URL: sim.url, FORWARD_ALLOW_PRIVATE: 'true', QUEUE_PREFIX: prefix, OUTBOUND_ATTEMPTS: '1' };
  app = await startApp(db, 'all', env);
  // A short heartbeat on the second process only: the first shows what ends a stream without it.
  web2 = await startApp(db, 'web', { ...env, EVENTS_HEARTBEAT_MS: '300' });
});
afterAll(async () => {
  await web2?.stop();
  await app?.stop();
  await sim?.close();
  await db?.drop();
});

describe('POST/GET /v1/tokens', () => {
  it('shows the token once, keeps only its SHA-256, lists tokens without secrets and with their last use', async () => {
    const created = await mint({ name: 'crm', scopes: ['conversations:read', 'conversations:read'] });
    expect(created.token).toMatch(/^war_[A-Za-z0-9_-]{43}$/);
    expect(created).toMatchObject({ name: 'crm', scopes: ['conversations:read'], areaIds: null, lastUsedAt: null, revokedAt: null });
    const { rows } = await db.pool.query<{ row: string; hash: Buffer }>('SELECT row_to_json(t)::text AS row, token_hash AS hash FROM api_tokens t WHERE id = $1', [created.id]);
    expect(rows[0]!.hash.equals(createHash('sha256').update(created.token).digest())).toBe(true);
    expect(rows[0]!.row).not.toContain(created.token.slice(4));

    const list = await admin('GET', '/v1/tokens');
    expect(list.text).not.toContain(created.token.slice(4));
    expect(list.body.data.find((t: { id: number }) => t.id === created.id)).not.toHaveProperty('token');

    expect((await call(app.url, created.token, 'GET', '/v1/conversations')).status).toBe(200);
    await eventually(async () => (await admin('GET', '/v1/tokens')).body.data.find((t: { id: number; lastUsedAt: string | null }) => t.id === created.id && t.lastUsedAt !== null), { what: 'lastUsedAt' });
  });

  it('refuses bad tokens to create with the JSON error', async () => {
    const area = await admin('POST', '/v1/areas', { name: 'Tokens', webhookUrl: 'http://127.0.0.1:9/t' });
    for (const body of [
      { name: 'x', scopes: ['root'] },
      { name: 'x', scopes: [] },
      { name: '', scopes: ['admin'] },
      { name: 'x', scopes: ['admin'], areaIds: [area.body.id] },
      { name: 'x', scopes: ['conversations:read'], areaIds: [987654] },
      { name: 'x', scopes: ['conversations:read'], expiresAt: '2020-01-01T00:00:00Z' },
    ]) {
      const r = await admin('POST', '/v1/tokens', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.code).toBe('invalid_request');
    }
  });
});

describe('scopes', () => {
  it('answers 403 with the JSON error when the scope is missing, 401 without a valid token', async () => {
    const reader = await mint({ name: 'reader', scopes: ['conversations:read'] });
    const sender = await mint({ name: 'sender', scopes: ['messages:send'] });
    const conv = await write('5511966000001', 1);
    const forbidden = [
      [reader.token, 'POST', '/v1/messages', { to: '5511966000001', type: 'text', text: { body: 'no' } }],
      [reader.token, 'PATCH', `/v1/conversations/${conv}`, { status: 'closed' }],
      [reader.token, 'POST', `/v1/conversations/${conv}/read`, {}],
      [reader.token, 'GET', '/v1/areas', undefined],
      [reader.token, 'GET', '/v1/tokens', undefined],
      [reader.token, 'GET', '/v1/dead-letters', undefined],
      [reader.token, 'GET', '/admin/queues', undefined],
      [sender.token, 'GET', '/v1/conversations', undefined],
      [sender.token, 'GET', '/v1/events', undefined],
    ] as const;
    for (const [token, method, path, body] of forbidden) {
      const r = await call(app.url, token, method, path, body);
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.body.error).toMatchObject({ code: 'forbidden', details: { requiredScope: expect.any(String) } });
    }
    expect((await call(app.url, reader.token, 'GET', `/v1/conversations/${conv}`)).status).toBe(200);
    expect((await call(app.url, sender.token, 'POST', '/v1/messages', { to: '5511966000001', type: 'text', text: { body: 'yes' } })).status).toBe(202);
    for (const token of [null, 'war_unknown', `${reader.token}x`]) {
      const r = await call(app.url, token, 'GET', '/v1/conversations');
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe('unauthorized');
    }
  });

  it('the WebSocket upgrade obeys the same scopes', async () => {
    const reader = await mint({ name: 'ws reader', scopes: ['conversations:read'] });
    const sender = await mint({ name: 'ws sender', scopes: ['messages:send'] });
    const upgrade = (token: string) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(`${app.url.replace(/^http/, 'ws')}/v1/events`, { headers: { authorization: `Bearer ${token}` } });
        ws.on('open', () => {
          ws.close();
          resolve(101);
        });
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('error', () => undefined);
      });
    expect(await upgrade(reader.token)).toBe(101);
    expect(await upgrade(sender.token)).toBe(403);
    expect(await upgrade('war_unknown')).toBe(401);
  });

  it('an expired token is refused', async () => {
    const t = await mint({ name: 'brief', scopes: ['conversations:read'], expiresAt: new Date(Date.now() + 1_500).toISOString() });
    expect((await call(app.url, t.token, 'GET', '/v1/conversations')).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1_600));
    expect((await call(app.url, t.token, 'GET', '/v1/conversations')).status).toBe(401);
  });
});

describe('DELETE /v1/tokens/:id', () => {
  it('a revoked token gets 401 on the very next request on both web processes, and its event streams end', async () => {
    const t = await mint({ name: 'revoked', scopes: ['conversations:read'] });
    for (const base of [app.url, web2.url]) expect((await call(base, t.token, 'GET', '/v1/conversations')).status).toBe(200);
    const streams: SseClient[] = [openSse(app.url, `?access_token=${t.token}`), openSse(web2.url, `?access_token=${t.token}`)];
    for (const s of streams) expect((await s.ready).status).toBe(200);
    const other = openSse(web2.url, `?access_token=${API_TOKEN}`);
    expect((await other.ready).status).toBe(200);
    await subscribed(prefix, 2);

    // Each process has seen the token live: its inbox list checks liveness in the page's own
    // statement. A page with rows and an empty one (a search matching nobody) both refuse it.
    const conv = await write('5511966000003', 3);
    for (const base of [app.url, web2.url]) expect((await call(base, t.token, 'GET', '/v1/conversations')).body.data.length, base).toBeGreaterThan(0);
    // A token without the inbox's scope, seen live by both processes too: revoked, it gets 401, not 403.
    const sender = await mint({ name: 'revoked sender', scopes: ['messages:send'] });
    for (const base of [app.url, web2.url]) expect((await call(base, sender.token, 'GET', '/v1/conversations')).status, base).toBe(403);
    expect((await admin('DELETE', `/v1/tokens/${sender.id}`)).status).toBe(204);
    for (const base of [app.url, web2.url]) expect((await call(base, sender.token, 'GET', '/v1/conversations')).status, base).toBe(401);
    expect((await admin('DELETE', `/v1/tokens/${t.id}`)).status).toBe(204);
    const paths = ['/v1/conversations', '/v1/conversations?q=nobody-at-all', '/v1/conversations?cursor=not-a-cursor', `/v1/conversations/${conv}/messages`, `/v1/conversations/${conv}`];
    for (const base of [web2.url, app.url]) {
      for (const path of paths) {
        const r = await call(base, t.token, 'GET', path);
        expect(r.status, `${base}${path}`).toBe(401);
        expect(r.body.error.code).toBe('unauthorized');
      }
    }
    await Promise.race([Promise.all(streams.map((s) => s.ended)), new Promise((_, reject) => setTimeout(() => reject(new Error('a revoked stream stayed open')), 5_000))]);
    // Other tokens' streams go on.
    await write('5511966000002', 2);
    await eventually(async () => other.events.find((e) => e.event === 'message.created'), { what: 'event on the admin stream' });
    await other.close();
    expect((await admin('DELETE', `/v1/tokens/${t.id}`)).status).toBe(404);
    expect((await admin('GET', '/v1/tokens')).body.data.find((x: { id: number }) => x.id === t.id).revokedAt).not.toBeNull();
  });
});

describe('the sends of a token limited to an area', () => {
  it('hears the accepted and failed statuses of its own sends, as an unlimited stream does', async () => {
    const area = (await admin('POST', '/v1/areas', { name: 'Senders', webhookUrl: 'http://127.0.0.1:9/s' })).body.id as number;
    const [ok, refused, down] = ['5511966000030', '5511966000031', '5511966000032'];
    for (const [i, to] of [ok, refused, down].entries()) expect((await admin('POST', `/v1/conversations/${await write(to, 30 + i)}/assign`, { areaId: area })).status).toBe(200);
    const t = await mint({ name: 'senders', scopes: ['conversations:read', 'messages:send'], areaIds: [area] });
    const sseArea = openSse(app.url, `?access_token=${t.token}&types=message.status`);
    const sseAdmin = openSse(app.url, `?access_token=${API_TOKEN}&types=message.status`);
    for (const s of [sseArea, sseAdmin]) expect((await s.ready).status).toBe(200);
    await subscribed(prefix, 1);
    // 131026 is refused for good; 131000 is retried, and with one attempt given up.
    sim.configure({ failFirst: { [refused]: { code: 131026, times: 1 }, [down]: { code: 131000, times: 1 } } });
    const ids: number[] = [];
    for (const to of [ok, refused, down]) {
      const r = await call(app.url, t.token, 'POST', '/v1/messages', { to, type: 'text', text: { body: 'from the area' } });
      expect(r.status, r.text).toBe(202);
      ids.push(r.body.id);
    }
    const statuses = (s: SseClient) => ids.map((id) => s.events.filter((e) => e.data.messageId === id).map((e) => e.data.status)[0]);
    await eventually(async () => statuses(sseAdmin).every(Boolean), { what: 'statuses on the admin stream' });
    expect(statuses(sseAdmin)).toEqual(['accepted', 'failed', 'failed']);
    await eventually(async () => statuses(sseArea).every(Boolean), { what: 'statuses on the area stream' }).catch(() => null);
    await Promise.all([sseArea.close(), sseAdmin.close()]);
    expect(statuses(sseArea)).toEqual(['accepted', 'failed', 'failed']);
  });
});

describe('Idempotency-Key', () => {
  it('is each token\'s own: another area\'s token reusing a key sends its own message and never sees the first', async () => {
    const areaA = (await admin('POST', '/v1/areas', { name: 'Idem A', webhookUrl: 'http://127.0.0.1:9/a' })).body.id as number;
    const areaB = (await admin('POST', '/v1/areas', { name: 'Idem B', webhookUrl: 'http://127.0.0.1:9/b' })).body.id as number;
    const [custA, custB] = ['5511966000020', '5511966000021'];
    const [convA, convB] = [await write(custA, 20), await write(custB, 21)];
    expect((await admin('POST', `/v1/conversations/${convA}/assign`, { areaId: areaA })).status).toBe(200);
    expect((await admin('POST', `/v1/conversations/${convB}/assign`, { areaId: areaB })).status).toBe(200);
    const tA = (await mint({ name: 'idem a', scopes: ['messages:send'], areaIds: [areaA] })).token;
    const tB = (await mint({ name: 'idem b', scopes: ['messages:send'], areaIds: [areaB] })).token;
    const sendWith = async (token: string, to: string, text: string) => {
      const res = await fetch(`${app.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'idempotency-key': 'order-1' }, body: JSON.stringify({ to, type: 'text', text: { body: text } }) });
      return { status: res.status, replayed: res.headers.get('idempotent-replayed'), body: (await res.json()) as { id: number } };
    };
    const a = await sendWith(tA, custA, 'for A');
    const b = await sendWith(tB, custB, 'for B');
    // The bootstrap token is a scope of its own too.
    const root = await sendWith(API_TOKEN, custB, 'from the admin');
    expect([a.status, b.status, root.status, b.replayed, root.replayed]).toEqual([202, 202, 202, null, null]);
    expect(new Set([a.body.id, b.body.id, root.body.id]).size).toBe(3);
    const toB = await db.pool.query<{ body: string }>("SELECT body FROM messages WHERE conversation_id = $1 AND direction = 'outbound' ORDER BY id", [convB]);
    expect(toB.rows.map((r) => r.body)).toEqual(['for B', 'from the admin']);
    // Each token's retry still replays its own message.
    const again = await sendWith(tB, custB, 'for B');
    expect([again.status, again.replayed, again.body.id]).toEqual([202, 'true', b.body.id]);
  });
});

describe('event streams of a token that stops working', () => {
  const ended = (s: SseClient) => Promise.race([s.ended.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 100))]);

  it('end at the token\'s expiry, SSE and WebSocket, and hear nothing after it', async () => {
    const t = await mint({ name: 'brief', scopes: ['conversations:read'], expiresAt: new Date(Date.now() + 2_000).toISOString() });
    const sse = openSse(app.url, `?access_token=${t.token}`);
    expect((await sse.ready).status).toBe(200);
    const ws = new WebSocket(`${app.url.replace(/^http/, 'ws')}/v1/events?access_token=${t.token}`);
    const wsEvents: string[] = [];
    const wsClosed = new Promise<void>((resolve) => ws.on('close', () => resolve()));
    await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
    ws.on('message', (d) => wsEvents.push(String(d)));
    await subscribed(prefix, 1);
    await new Promise((r) => setTimeout(r, 2_300));
    expect((await call(app.url, t.token, 'GET', '/v1/conversations')).status).toBe(401);
    // Only this conversation's events count: a late event of an earlier test's message, published
    // while the token was still live, was rightly delivered.
    const after = await write('5511966000010', 10);
    await new Promise((r) => setTimeout(r, 1_000));
    const wsOpen = ws.readyState === WebSocket.OPEN;
    ws.terminate();
    await wsClosed;
    const sseEnded = await ended(sse);
    await sse.close();
    const heardSse = sse.events.filter((e) => e.data.conversationId === after).length;
    const heardWs = wsEvents.map((e) => JSON.parse(e) as { conversationId?: number }).filter((e) => e.conversationId === after).length;
    expect({ sseEnded, wsOpen, sse: heardSse, ws: heardWs }).toEqual({ sseEnded: true, wsOpen: false, sse: 0, ws: 0 });
  });

  it('end when the revocation is published while the events subscription is down (Redis failover, network blip)', async () => {
    const t = await mint({ name: 'revoked while away', scopes: ['conversations:read'] });
    const sse = openSse(app.url, `?access_token=${t.token}`);
    expect((await sse.ready).status).toBe(200);
    await subscribed(prefix, 1);
    const redis = new Redis(inject('redisUrl'));
    try {
      // ioredis reconnects in ~100 ms: the revocation is published before its subscription holds again.
      await redis.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      expect((await admin('DELETE', `/v1/tokens/${t.id}`)).status).toBe(204);
    } finally {
      redis.disconnect();
    }
    await subscribed(prefix, 1);
    await write('5511966000011', 11);
    await new Promise((r) => setTimeout(r, 1_000));
    const streamEnded = await ended(sse);
    await sse.close();
    expect({ streamEnded, received: sse.events.filter((e) => e.event === 'message.created').length }).toEqual({ streamEnded: true, received: 0 });
  });

  it('end within a heartbeat when the revocation was never published', async () => {
    const t = await mint({ name: 'revoked quietly', scopes: ['conversations:read'] });
    const sse = openSse(web2.url, `?access_token=${t.token}`);
    expect((await sse.ready).status).toBe(200);
    // As a revocation whose message no process heard: only the database knows.
    await db.pool.query('UPDATE api_tokens SET revoked_at = now() WHERE id = $1', [t.id]);
    const streamEnded = await Promise.race([sse.ended.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 2_000))]);
    await sse.close();
    expect(streamEnded).toBe(true);
  });
});

describe('a token limited to an area', () => {
  it('sees, changes, answers and hears only the conversations assigned to its area', async () => {
    const areaA = (await admin('POST', '/v1/areas', { name: 'Area A', webhookUrl: 'http://127.0.0.1:9/a' })).body.id as number;
    const areaB = (await admin('POST', '/v1/areas', { name: 'Area B', webhookUrl: 'http://127.0.0.1:9/b' })).body.id as number;
    const mine = await write('5511955000001', 10);
    const theirs = await write('5511955000002', 11);
    expect((await admin('POST', `/v1/conversations/${mine}/assign`, { areaId: areaA })).status).toBe(200);
    expect((await admin('POST', `/v1/conversations/${theirs}/assign`, { areaId: areaB })).status).toBe(200);
    const t = (await mint({ name: 'team A', scopes: ['conversations:read', 'conversations:write', 'messages:send'], areaIds: [areaA] })).token;
    const as = (method: string, path: string, body?: unknown) => call(app.url, t, method, path, body);

    const sseArea = openSse(web2.url, `?access_token=${t}`);
    const sseAdmin = openSse(web2.url, `?access_token=${API_TOKEN}`);
    for (const s of [sseArea, sseAdmin]) expect((await s.ready).status).toBe(200);
    // The streams are on web2: subscribed since the revocation test, or (run alone) the only subscriber.
    await subscribed(prefix, 1);

    expect((await as('GET', '/v1/conversations')).body.data.map((c: { id: number }) => c.id)).toEqual([mine]);
    expect((await as('GET', `/v1/conversations?areaId=${areaB}`)).body.data).toEqual([]);
    const theirMessage = (await db.pool.query<{ id: number; wamid: string }>('SELECT id, wamid FROM messages WHERE conversation_id = $1 LIMIT 1', [theirs])).rows[0]!;
    for (const [method, path, body] of [
      ['GET', `/v1/conversations/${theirs}`, undefined],
      ['GET', `/v1/conversations/${theirs}/messages`, undefined],
      ['PATCH', `/v1/conversations/${theirs}`, { status: 'closed' }],
      ['POST', `/v1/conversations/${theirs}/read`, {}],
      ['POST', `/v1/conversations/${theirs}/assign`, { areaId: areaA }],
      ['POST', `/v1/conversations/${theirs}/release`, {}],
      ['GET', `/v1/messages/${theirMessage.id}`, undefined],
      ['GET', `/v1/messages?wamid=${theirMessage.wamid}`, undefined],
      ['POST', '/v1/messages', { to: '5511955000002', type: 'text', text: { body: 'not mine' } }],
      ['POST', '/v1/messages', { to: '5511955000999', type: 'text', text: { body: 'a new customer' } }],
    ] as const) {
      const r = await as(method, path, body);
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(r.body.error.code).toBe('not_found');
    }
    expect((await as('POST', `/v1/conversations/${mine}/assign`, { areaId: areaB })).status).toBe(403);
    expect((await as('GET', `/v1/conversations/${mine}/messages`)).status).toBe(200);
    expect((await as('PATCH', `/v1/conversations/${mine}`, { assignee: 'ana' })).body).toMatchObject({ id: mine, assignee: 'ana' });
    expect((await as('POST', '/v1/messages', { to: '5511955000001', type: 'text', text: { body: 'mine' } })).status).toBe(202);

    // Events: both customers write, the admin changes the other one; the area's stream hears only its own.
    await write('5511955000002', 12);
    await write('5511955000001', 13);
    expect((await admin('PATCH', `/v1/conversations/${theirs}`, { status: 'closed' })).status).toBe(200);
    await eventually(async () => sseAdmin.events.some((e) => e.data.conversationId === theirs && e.data.status === 'closed') && sseAdmin.events.some((e) => e.event === 'message.created' && e.data.conversationId === mine), { what: 'admin events' });
    await eventually(async () => sseArea.events.some((e) => e.event === 'message.created' && e.data.conversationId === mine), { what: 'area events' });
    expect(sseAdmin.events.filter((e) => e.data.conversationId === theirs).length).toBeGreaterThan(1);
    expect(sseArea.events.filter((e) => e.data.conversationId !== mine)).toEqual([]);
    await Promise.all([sseArea.close(), sseAdmin.close()]);

    // Released: it left the area, so the area's token no longer sees it.
    expect((await as('POST', `/v1/conversations/${mine}/release`, {})).status).toBe(200);
    expect((await as('GET', `/v1/conversations/${mine}`)).status).toBe(404);
  });

  it('hears its area\'s events of a batch on every stream, whatever types= each asks', async () => {
    const area = (await admin('POST', '/v1/areas', { name: 'Area T', webhookUrl: 'http://127.0.0.1:9/t' })).body.id as number;
    const x = await write('5511977000001', 20);
    const y = await write('5511977000002', 21);
    for (const c of [x, y]) expect((await admin('POST', `/v1/conversations/${c}/assign`, { areaId: area })).status).toBe(200);
    const t = (await mint({ name: 'team T', scopes: ['conversations:read'], areaIds: [area] })).token;
    // Opened first, so its listener is the first to see each batch.
    const updates = openSse(app.url, `?access_token=${t}&types=conversation.updated`);
    expect((await updates.ready).status).toBe(200);
    const created = openSse(app.url, `?access_token=${t}&types=message.created`);
    expect((await created.ready).status).toBe(200);
    const redis = new Redis(inject('redisUrl'));
    try {
      // One batch, as a stored webhook batch carries: a new message in x and an update of y, both of
      // the token's area. Published until the first stream hears it (this process may subscribe late).
      const batch = JSON.stringify([
        { type: 'message.created', conversationId: x, channelId: 1, messageId: 999001 },
        { type: 'conversation.updated', conversationId: y, channelId: 1, status: 'closed' },
      ]);
      await eventually(async () => (await redis.publish(`${prefix}:events`, batch), updates.events.some((e) => e.data.conversationId === y)), { intervalMs: 200, what: 'conversation.updated of y' });
      await new Promise((r) => setTimeout(r, 500));
      const heard = updates.events.filter((e) => e.data.conversationId === y).length;
      expect(created.events.map((e) => [e.event, e.data.conversationId])).toEqual(Array.from({ length: heard }, () => ['message.created', x]));
    } finally {
      redis.disconnect();
      await Promise.all([updates.close(), created.close()]);
    }
  });

  it('pages through exactly its conversations with every filter, ties in activity and conversations without messages', async () => {
    interface Row { id: number; t: number | null; unread: number; status: string; assignee: string | null; area: number | null; state: string | null; name: string }
    const pages = async (token: string, query: string, limit: number): Promise<number[]> => {
      const ids: number[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 200; i++) {
        const r = await call(app.url, token, 'GET', `/v1/conversations?limit=${limit}${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        expect(r.status, r.text).toBe(200);
        ids.push(...(r.body as { data: { id: number }[] }).data.map((c) => c.id));
        cursor = (r.body as { nextCursor: string | null }).nextCursor;
        if (!cursor) return ids;
      }
      throw new Error('too many pages');
    };
    const { rows: [ch] } = await db.pool.query<{ id: number }>(`INSERT INTO channels (phone_number_id) VALUES ('area-pages') RETURNING id`);
    const { rows: areaRows } = await db.pool.query<{ id: number }>(`INSERT INTO areas (name, webhook_url) SELECT 'pages ' || g, 'http://127.0.0.1:9/' || g FROM generate_series(1, 3) g RETURNING id`);
    const areas = areaRows.map((a) => Number(a.id));
    const { rows: contacts } = await db.pool.query<{ id: number }>(`INSERT INTO contacts (wa_id, profile_name) SELECT '5531' || lpad(g::text, 9, '0'), CASE WHEN g % 4 = 0 THEN 'Maria Barbosa ' || g ELSE 'Zé ' || g END FROM generate_series(1, 60) g RETURNING id`);
    const rows: Row[] = [];
    const t0 = Date.UTC(2026, 10, 1);
    for (const [i, c] of contacts.entries()) {
      // Six distinct times only (ties galore), and every seventh conversation without any message.
      const t = i % 7 === 0 ? null : t0 + (i % 6) * 1000;
      const r: Omit<Row, 'id'> = { t, unread: i % 3 === 0 ? 0 : 2, status: i % 5 === 0 ? 'closed' : 'open', assignee: i % 2 === 0 ? `agent-${i % 4}` : null, area: i % 4 === 3 ? null : areas[i % 3]!, state: i % 4 === 3 ? null : i % 8 === 5 ? 'closed' : 'assigned', name: '' };
      const { rows: [cv] } = await db.pool.query<{ id: number }>(
        `INSERT INTO conversations (channel_id, contact_id, last_message_at, unread_count, status, assignee) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
        [ch!.id, c.id, t === null ? null : new Date(t), r.unread, r.status, r.assignee],
      );
      if (r.area !== null) await db.pool.query(`INSERT INTO conversation_routes (conversation_id, state, area_id, assigned_at, assigned_by) VALUES ($1, $2, $3, now(), 'api')`, [cv!.id, r.state, r.area]);
      rows.push({ ...r, id: Number(cv!.id), name: (i + 1) % 4 === 0 ? 'barbosa' : 'ze' });
    }
    const token = (await mint({ name: 'two areas', scopes: ['conversations:read'], areaIds: [areas[0], areas[1]] })).token;
    const visible = (r: Row) => r.state === 'assigned' && (r.area === areas[0] || r.area === areas[1]);
    const order = (a: Row, b: Row) => (b.t ?? -Infinity) - (a.t ?? -Infinity) || b.id - a.id;
    const expected = (pred: (r: Row) => boolean) => rows.filter((r) => visible(r) && pred(r)).sort(order).map((r) => r.id);
    const cases: [string, (r: Row) => boolean][] = [
      ['', () => true],
      ['&unread=true', (r) => r.unread > 0],
      ['&unread=false', (r) => r.unread === 0],
      ['&status=closed', (r) => r.status === 'closed'],
      ['&status=open&assignee=agent-2', (r) => r.status === 'open' && r.assignee === 'agent-2'],
      ['&q=barbosa', (r) => r.name === 'barbosa'],
      ['&q=barbosa&unread=true', (r) => r.name === 'barbosa' && r.unread > 0],
      [`&areaId=${areas[1]}`, (r) => r.area === areas[1]],
      [`&areaId=${areas[2]}`, () => false],
    ];
    for (const limit of [1, 2, 7]) {
      for (const [query, pred] of cases) expect(await pages(token, query, limit), `limit ${limit}${query}`).toEqual(expected(pred));
    }
    // The unlimited token sees the other area and unrouted ones too, in the same order.
    expect(await pages(API_TOKEN, `&channelId=${ch!.id}`, 3)).toEqual([...rows].sort(order).map((r) => r.id));
  });
});
