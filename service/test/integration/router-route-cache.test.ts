// The routing state's Redis cache as customers meet it: assigned conversations are recognized
// from Redis alone (no Postgres read on the hot path), every change (menu routing, assign,
// release, area deletion, a saved menu) reaches the cache at once, and Postgres stays the truth
// when the cache is voided, emptied or the worker restarts.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Logger } from '../../src/log.js';
import { RouteCache } from '../../src/router/routing/route-cache.js';
import { startGraphSimulator, type GraphSimulator, type SentMessage } from '../../../scripts/graph-sim/server.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, uniquePrefix, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';

let db: TestDb;
let sim: GraphSimulator;
let app: RunningApp;
let redis: Redis;
let channelId: number;
const prefix = uniquePrefix();
const env = () => ({ QUEUE_PREFIX: prefix, GRAPH_API_BASE_URL: sim.url, FORWARD_ALLOW_PRIVATE: 'true', FORWARD_POLL_MS: '20' });
const receivers: Receiver[] = [];
const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };
const api = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${app.url}${path}`, { method, headers: auth, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: res.status === 204 ? null : await json(res) };
};

let seq = 0;
const clock = new Map<string, number>();
const say = async (from: string, body: string) => {
  const t = (clock.get(from) ?? Math.floor(Date.now() / 1000) - 600) + 1;
  clock.set(from, t);
  const message = { from, id: `wamid.RCACHE${Date.now().toString(36)}${(seq++).toString(36)}`, timestamp: String(t), type: 'text', text: { body } };
  const envelope = { object: 'whatsapp_business_account', entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
    messaging_product: 'whatsapp', metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID },
    contacts: [{ profile: { name: 'Customer' }, wa_id: from }], messages: [message],
  } }] }] };
  expect((await postWebhook(app.url, JSON.stringify(envelope))).status).toBe(200);
};
const sentTo = (who: string) => sim.sent.filter((s) => s.to === who);
const nth = (who: string, n: number) => eventually(async () => sentTo(who)[n - 1], { what: `bot message ${n} to ${who}` });
const interactive = (m: SentMessage) => m.body.interactive as { body: { text: string } };
const greeting = (m: SentMessage) => interactive(m).body.text;
const conversationOf = async (who: string) => eventually(async () => (await db.pool.query('SELECT cv.id FROM conversations cv JOIN contacts c ON c.id = cv.contact_id WHERE c.wa_id = $1', [who])).rows[0]?.id as number | undefined, { what: `conversation of ${who}` });
const cached = async (conv: number) => redis.get(`${prefix}:router:route:${conv}`);
const forwarded = (r: Receiver) => r.delivered().filter((x) => x.body.type === 'message.received').map((x) => (x.body.data.message as { body: string }).body);

async function area(name: string) {
  const receiver = await startReceiver();
  receivers.push(receiver);
  const res = await api('POST', '/v1/areas', { name, webhookUrl: receiver.url });
  receiver.secrets.push(res.body.secret);
  return { id: res.body.id as number, receiver };
}

let sales: Awaited<ReturnType<typeof area>>;

beforeAll(async () => {
  db = await createTestDb();
  redis = new Redis(inject('redisUrl'));
  sim = await startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 1, statusDelayMs: 10, deliverAndRead: false } });
  app = await startApp(db, 'all', env());
  sim.configure({ webhookUrl: `${app.url}/webhooks/whatsapp` });
  channelId = (await db.pool.query('SELECT id FROM channels LIMIT 1')).rows[0].id;
  sales = await area('Sales');
  expect((await api('PUT', `/v1/channels/${channelId}/menu`, { greeting: 'Hello v1', options: [{ id: 'sales', title: 'Sales', areaId: sales.id }, { id: 'other', title: 'Other', areaId: sales.id }] })).status).toBe(200);
});
afterAll(async () => {
  await app?.stop();
  await sim?.close();
  for (const r of receivers) await r.close();
  redis?.disconnect();
  await db?.drop();
});

it('recognizes assigned conversations from Redis alone; changes reach the cache at once; a voided cache falls back to Postgres', async () => {
  const who = '5511944440001';
  await say(who, 'hi');
  expect(greeting(await nth(who, 1))).toBe('Hello v1');
  await say(who, '1');
  const conv = await conversationOf(who);
  await eventually(async () => (await cached(conv))?.endsWith(`:${sales.id}`), { what: 'assignment by the menu cached' });
  await say(who, 'to sales');
  await eventually(async () => forwarded(sales.receiver).includes('to sales'), { what: 'forwarded' });

  expect((await api('POST', `/v1/conversations/${conv}/release`)).status).toBe(200);
  expect(await cached(conv)).toMatch(/^\d+:\d+:$/);
  await say(who, 'after release');
  expect(greeting(await nth(who, 2))).toBe('Hello v1');

  // Postgres changed behind the cache's back (raw SQL, not the app): the hot path believes Redis...
  expect((await api('POST', `/v1/conversations/${conv}/assign`, { areaId: sales.id })).status).toBe(200);
  expect(await cached(conv)).toMatch(new RegExp(`:${sales.id}$`));
  await db.pool.query("UPDATE conversation_routes SET state = 'menu', area_id = NULL WHERE conversation_id = $1", [conv]);
  await say(who, 'cache says assigned');
  await new Promise((r) => setTimeout(r, 1_000));
  expect(sentTo(who)).toHaveLength(2);
  // ...until the cache is voided (what a process does when it could not write a change): Postgres
  // answers, and the menu (still at its first level) takes the message as an answer.
  await redis.incr(`${prefix}:router:route-gen`);
  await say(who, 'cache voided');
  expect(interactive(await nth(who, 3)).body.text).toMatch(/did not understand/);
});

it('an area deleted sends its conversations back to the menu at once', async () => {
  const doomed = await area('Doomed');
  const who = '5511944440002';
  await say(who, 'hi');
  await nth(who, 1);
  const conv = await conversationOf(who);
  await api('POST', `/v1/conversations/${conv}/assign`, { areaId: doomed.id });
  await say(who, 'to doomed');
  await eventually(async () => forwarded(doomed.receiver).includes('to doomed'), { what: 'forwarded to the doomed area' });
  expect((await api('DELETE', `/v1/areas/${doomed.id}`)).status).toBe(204);
  await say(who, 'anyone there?');
  expect(greeting(await nth(who, 2))).toBe('Hello v1');
});

it('a saved menu applies at once, not after the menu cache time', async () => {
  await say('5511944440003', 'hi');
  expect(greeting(await nth('5511944440003', 1))).toBe('Hello v1');
  expect((await api('PUT', `/v1/channels/${channelId}/menu`, { greeting: 'Hello v2', options: [{ id: 'sales', title: 'Sales', areaId: sales.id }] })).status).toBe(200);
  await say('5511944440004', 'hi');
  expect(greeting(await nth('5511944440004', 1))).toBe('Hello v2');
});

it('after a worker restart with the cache emptied, Postgres answers and the cache fills again', async () => {
  const who = '5511944440005';
  await say(who, 'hi');
  await nth(who, 1);
  const conv = await conversationOf(who);
  await api('POST', `/v1/conversations/${conv}/assign`, { areaId: sales.id });
  const left = '5511944440006';
  await say(left, 'hi');
  await nth(left, 1);
  const leftConv = await conversationOf(left);
  await api('POST', `/v1/conversations/${leftConv}/assign`, { areaId: sales.id });
  await app.stop();
  // While no worker runs, the routing changes in Postgres and Redis loses the cache.
  await db.pool.query("UPDATE conversation_routes SET state = 'menu', area_id = NULL, assigned_at = NULL WHERE conversation_id = $1", [leftConv]);
  await redis.del(`${prefix}:router:route:${conv}`, `${prefix}:router:route:${leftConv}`);
  app = await startApp(db, 'all', env());
  sim.configure({ webhookUrl: `${app.url}/webhooks/whatsapp` });
  await say(who, 'after restart');
  await say(left, 'after restart');
  await eventually(async () => forwarded(sales.receiver).includes('after restart'), { what: 'the assigned one forwarded' });
  expect(interactive(await nth(left, 2)).body.text).toMatch(/did not understand/);
  expect(sentTo(who)).toHaveLength(1);
  await eventually(async () => (await cached(conv))?.endsWith(`:${sales.id}`), { what: 'cache filled from Postgres' });
});

describe('a fill from a Postgres read racing a change', () => {
  const silent = { warn: () => undefined, info: () => undefined, error: () => undefined, debug: () => undefined } as unknown as Logger;
  const conv = 4242;

  it('never outlives the void that followed a release it did not see', async () => {
    const own = uniquePrefix();
    const cache = new RouteCache(redis, silent, { prefix: own });
    await cache.changed([{ conversationId: conv, version: 3, areaId: 7 }]);
    // The engine reads the cache, then Postgres (version 3, assigned to 7) ...
    const before = await cache.read([conv]);
    // ... a release commits (version 4) in a process that cannot reach Redis: it voids the cache
    // (the generation bump lands once Redis answers) ...
    const unreachable = new Redis({ port: 1, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    unreachable.on('error', () => undefined);
    await new RouteCache(unreachable, silent, { prefix: own }).changed([{ conversationId: conv, version: 4, areaId: null }]);
    unreachable.disconnect();
    await redis.incr(`${own}:router:route-gen`);
    expect((await cache.read([conv]))?.routes.has(conv)).toBe(false);
    // ... and only then does the engine fill what it read.
    await cache.fill([{ conversationId: conv, version: 3, areaId: 7 }], before!.gen);
    expect((await cache.read([conv]))?.routes.has(conv)).toBe(false);
  });

  it('never replaces the newer version a committed change wrote', async () => {
    const cache = new RouteCache(redis, silent, { prefix: uniquePrefix() });
    const before = await cache.read([conv]);
    // Released (version 4) and written after the engine's Postgres read of version 3 (assigned).
    await cache.changed([{ conversationId: conv, version: 4, areaId: null }]);
    await cache.fill([{ conversationId: conv, version: 3, areaId: 7 }], before!.gen);
    expect((await cache.read([conv]))?.routes.get(conv)).toBeNull();
  });
});
