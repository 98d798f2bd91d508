// Request limits: /v1 per token and IP with RateLimit headers and the JSON 429; the webhook
// limits unsigned and badly signed requests per IP, never one with a valid signature.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_TOKEN, createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';

let db: TestDb;
let app: RunningApp;
const body = (i: number) => JSON.stringify({
  object: 'whatsapp_business_account',
  entry: [{ id: '1', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '1', phone_number_id: PHONE_NUMBER_ID },
    contacts: [{ profile: { name: 'X' }, wa_id: '5511933330001' }], messages: [{ from: '5511933330001', id: `wamid.RL${i}`, timestamp: '1780000000', type: 'text', text: { body: 'x' } }] } }] }],
});

beforeAll(async () => {
  db = await createTestDb();
  app = await startApp(db, 'web', { RATE_LIMIT_PER_MINUTE: '5' });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

describe('rate limits', () => {
  it('limits /v1 per token and IP with RateLimit headers and a JSON 429', async () => {
    const get = (token = API_TOKEN) => fetch(`${app.url}/v1/areas`, { headers: { authorization: `Bearer ${token}` } });
    const first = await get();
    expect(first.status).toBe(200);
    expect(String(first.headers.get('ratelimit-policy'))).toMatch(/q=5/);
    expect(String(first.headers.get('ratelimit'))).toMatch(/r=4/);
    for (let i = 0; i < 4; i++) expect((await get()).status).toBe(200);
    const limited = await get();
    expect(limited.status).toBe(429);
    expect((await json(limited)).error.code).toBe('rate_limited');
    // Another token from the same address has its own budget.
    expect((await get('another-token-0123456789')).status).toBe(401);
  });

  it('never limits a validly signed webhook; limits unsigned ones per IP', async () => {
    for (let i = 0; i < 5; i++) expect((await postWebhook(app.url, body(i), { signature: null })).status).toBe(401);
    const blocked = await postWebhook(app.url, body(100), { signature: null });
    expect(blocked.status).toBe(429);
    expect(JSON.parse(blocked.body).error.code).toBe('rate_limited');
    for (let i = 0; i < 10; i++) expect((await postWebhook(app.url, body(200 + i))).status).toBe(200);
  });
});
