// Request limits with the default budget (100 a minute): on /v1 only requests that fail
// authentication are limited, per IP; an integration with a valid token is not. The webhook limits
// unsigned and badly signed requests per IP, never one with a valid signature. With a per-token
// budget, it is the token's (not the header's spelling), on plain HTTP and WebSocket upgrades alike.
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_TOKEN, createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { openSse } from '../helpers/events.js';

let db: TestDb;
let app: RunningApp;
const webhookApps: RunningApp[] = [];
// Each webhook check gets its own app, so its own per-IP counter.
const webhookApp = async () => {
  const a = await startApp(db, 'web', { RATE_LIMIT_PER_MINUTE: '5' });
  webhookApps.push(a);
  return a;
};
const body = (i: number) => JSON.stringify({
  object: 'whatsapp_business_account',
  entry: [{ id: '1', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '1', phone_number_id: PHONE_NUMBER_ID },
    contacts: [{ profile: { name: 'X' }, wa_id: '5511933330001' }], messages: [{ from: '5511933330001', id: `wamid.RL${i}`, timestamp: '1780000000', type: 'text', text: { body: 'x' } }] } }] }],
});

beforeAll(async () => {
  db = await createTestDb();
  // The test environment turns limits off; these run with the shipped default.
  app = await startApp(db, 'web', { RATE_LIMIT_PER_MINUTE: '100' });
});
afterAll(async () => {
  await app?.stop();
  for (const a of webhookApps) await a.stop();
  await db?.drop();
});

const send = (i: number, token = API_TOKEN) =>
  fetch(`${app.url}/v1/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ to: `55119444${String(i).padStart(5, '0')}`, type: 'text', text: { body: `n${i}` } }),
  });

describe('rate limits', () => {
  it('accepts more than 100 authenticated sends a minute with one token', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 130; i++) statuses.push((await send(i)).status);
    expect(statuses.filter((s) => s !== 202)).toEqual([]);
  });

  it('limits failed authentication per IP, however many tokens are tried, with RateLimit headers and a JSON 429', async () => {
    const bogus = (i: number) => fetch(`${app.url}/v1/areas`, { headers: { authorization: `Bearer guess-${i}-0123456789` } });
    const first = await bogus(0);
    expect(first.status).toBe(401);
    expect(String(first.headers.get('ratelimit-policy'))).toMatch(/q=100/);
    for (let i = 1; i < 100; i++) expect((await bogus(i)).status).toBe(401);
    const limited = await bogus(100);
    expect(limited.status).toBe(429);
    expect((await json(limited)).error.code).toBe('rate_limited');
    expect((await bogus(101)).status).toBe(429);
    // The valid token from the same address is still served.
    expect((await fetch(`${app.url}/v1/areas`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).status).toBe(200);
  });

  it('never limits a validly signed webhook; limits unsigned ones per IP', async () => {
    const { url } = await webhookApp();
    for (let i = 0; i < 5; i++) expect((await postWebhook(url, body(i), { signature: null })).status).toBe(401);
    const blocked = await postWebhook(url, body(100), { signature: null });
    expect(blocked.status).toBe(429);
    expect(JSON.parse(blocked.body).error.code).toBe('rate_limited');
    for (let i = 0; i < 10; i++) expect((await postWebhook(url, body(200 + i))).status).toBe(200);
  });

  it('limits badly signed webhooks per IP; valid signatures from that IP are still served', async () => {
    const { url } = await webhookApp();
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await postWebhook(url, body(300 + i), { signature: 'sha256=' + '0'.repeat(64) })).status);
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(statuses.slice(5).every((s) => s === 429)).toBe(true);
    for (let i = 0; i < 5; i++) expect((await postWebhook(url, body(400 + i))).status).toBe(200);
  });
});

describe('per-token limit (3 a minute here)', () => {
  let limited: RunningApp;
  beforeAll(async () => {
    limited = await startApp(db, 'web', { RATE_LIMIT_PER_MINUTE: '3', RATE_LIMIT_PER_TOKEN_PER_MINUTE: '3' });
  });
  afterAll(async () => {
    await limited?.stop();
  });
  // Minted through the unlimited app (same database), so minting spends no limited budget.
  const mint = async (name: string) => {
    const r = await fetch(`${app.url}/v1/tokens`, { method: 'POST', headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name, scopes: ['conversations:read'] }) });
    return ((await json(r)) as { token: string }).token;
  };
  const get = async (headers: Record<string, string>) => (await fetch(`${limited.url}/v1/conversations`, { headers })).status;
  const upgrade = (query: string) =>
    new Promise<number>((resolve) => {
      const ws = new WebSocket(`${limited.url.replace(/^http/, 'ws')}/v1/events${query}`);
      ws.on('open', () => {
        ws.close();
        resolve(101);
      });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => resolve(-1));
    });

  it('keys on the token, not on how the Authorization header spells it', async () => {
    const token = await mint('spellings');
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push(await get({ authorization: `Bearer ${token}` }));
    expect(statuses).toEqual([200, 200, 200, 429]);
    const variants = [`bearer ${token}`, `BEARER ${token}`, `Bearer  ${token}`, `Bearer ${token} `, `Bearer\t${token}`];
    const escaped: number[] = [];
    for (const v of variants) escaped.push(await get({ authorization: v }));
    expect(escaped).toEqual(variants.map(() => 429));
  });

  it('gives each ?access_token= stream its own token\'s bucket', async () => {
    const a = await mint('stream a');
    const b = await mint('stream b');
    for (let i = 0; i < 3; i++) {
      const s = openSse(limited.url, `?access_token=${a}`);
      expect((await s.ready).status).toBe(200);
      await s.close();
    }
    const s = openSse(limited.url, `?access_token=${b}`);
    const status = (await s.ready).status;
    await s.close();
    expect(status).toBe(200);
  });

  it('limits WebSocket upgrades on /v1/events per token, sharing the bucket with plain HTTP', async () => {
    const token = await mint('websocket');
    expect(await get({ authorization: `Bearer ${token}` })).toBe(200);
    const seen: number[] = [];
    for (let i = 0; i < 4; i++) seen.push(await upgrade(`?access_token=${token}`));
    expect(seen).toEqual([101, 101, 429, 429]);
  });

  it('limits unauthenticated WebSocket upgrades per IP', async () => {
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) seen.push(await upgrade('?access_token=wrong'));
    expect(seen).toEqual([401, 401, 401, 429, 429]);
  });
});
