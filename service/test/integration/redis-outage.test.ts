// Redis down: the webhook answers 503 (never 200), and Meta's redelivery after Redis
// returns is stored exactly once; the API's request limits fail open at once, saying so once
// in the log (not a console line per request) and counting what they let through.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, inject, it, vi } from 'vitest';
import { createLogger } from '../../src/log.js';
import { startRedis, type RedisHandle } from '../../../scripts/stack/redis.js';
import { freePort } from '../../../scripts/stack/proc.js';
import { API_TOKEN, createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { eventually, postWebhook, startApp, type RunningApp } from '../helpers/app.js';

let db: TestDb;
let redis: RedisHandle;
let app: RunningApp;
const password = 'outage-pass';
let redisDir: string;
let port: number;
const logLines: { level: string; msg: string }[] = [];

const body = (id: string) =>
  JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '1', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '1', phone_number_id: PHONE_NUMBER_ID }, contacts: [{ profile: { name: 'R' }, wa_id: '5511900000100' }], messages: [{ from: '5511900000100', id, timestamp: '1760000000', type: 'text', text: { body: 'during outage' } }] } }] }],
  });

beforeAll(async () => {
  db = await createTestDb();
  redisDir = path.join(inject('stackDir'), `redis-outage-${process.pid}`);
  port = await freePort();
  redis = await startRedis({ dir: redisDir, port, password });
  const log = createLogger('info', {}, { write: (line: string) => void logLines.push(JSON.parse(line) as { level: string; msg: string }) });
  app = await startApp(db, 'all', { REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: '100', RATE_LIMIT_PER_TOKEN_PER_MINUTE: '1000' }, { log });
});
afterAll(async () => {
  await app?.stop();
  await redis?.stop();
  await db?.drop();
  fs.rmSync(redisDir, { recursive: true, force: true });
});

it('answers 503 while Redis is down and stores the redelivery once after', async () => {
  expect((await postWebhook(app.url, body('wamid.OUTAGE-before'))).status).toBe(200);
  await redis.stop();
  const during = body('wamid.OUTAGE-during');
  const t0 = Date.now();
  const res = await postWebhook(app.url, during);
  expect(res.status).toBe(503);
  expect(JSON.parse(res.body).error.code).toBe('unavailable');
  expect(Date.now() - t0).toBeLessThan(5_000);
  const ready = await fetch(`${app.url}/readyz`);
  expect(ready.status).toBe(503);
  // The limiters' counters live in Redis: while it is away they let requests through at once.
  const consoleError = vi.spyOn(console, 'error');
  const consoleWarn = vi.spyOn(console, 'warn');
  for (const [token, status] of [[API_TOKEN, 200], ['bogus-token-0123456789', 401]] as const) {
    for (let i = 0; i < 3; i++) {
      const t = Date.now();
      const r = await fetch(`${app.url}/v1/conversations`, { headers: { authorization: `Bearer ${token}` } });
      expect(r.status).toBe(status);
      expect(Date.now() - t).toBeLessThan(200);
    }
  }
  const fromLimiter = (spy: typeof consoleError) => spy.mock.calls.filter((args) => args.some((a) => /rate.?limit/i.test(String(a))));
  expect(fromLimiter(consoleError)).toEqual([]);
  expect(fromLimiter(consoleWarn)).toEqual([]);
  consoleError.mockRestore();
  consoleWarn.mockRestore();
  const unavailable = () => logLines.filter((l) => l.msg.startsWith('rate limits: Redis unavailable'));
  expect(unavailable()).toHaveLength(1);
  expect(unavailable()[0]!.level).toBe('warn');
  expect(Number((await (await fetch(`${app.url}/metrics`)).text()).match(/^wa_router_rate_limit_unlimited_total (\d+)$/m)?.[1])).toBeGreaterThanOrEqual(6);

  redis = await startRedis({ dir: redisDir, port, password });
  // Meta retries with backoff; the first retries may still hit the reconnect.
  const redelivered = await eventually(async () => (await postWebhook(app.url, during)).status === 200, { timeoutMs: 20_000, intervalMs: 250, what: 'redelivery accepted' });
  expect(redelivered).toBe(true);
  await eventually(async () => Number((await db.pool.query("SELECT count(*) AS n FROM messages WHERE wamid LIKE 'wamid.OUTAGE-%'")).rows[0].n) === 2, { timeoutMs: 20_000, what: 'both messages stored' });
  await new Promise((r) => setTimeout(r, 500));
  // Once each by what no constraint guards: the unread count and the stored-messages counter.
  const unread = (await db.pool.query("SELECT c.unread_count FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE k.wa_id = '5511900000100'")).rows;
  expect(unread).toEqual([{ unread_count: 2 }]);
  const metrics = await (await fetch(`${app.url}/metrics`)).text();
  expect(metrics).toMatch(/^wa_router_inbound_messages_stored_total 2$/m);
  // Redis back: the limits apply again, said once; the outage was logged once.
  expect((await fetch(`${app.url}/v1/conversations`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).status).toBe(200);
  await eventually(async () => logLines.some((l) => l.msg === 'rate limits: Redis answers again; limits apply'), { what: 'limits back in the log' });
  expect(unavailable()).toHaveLength(1);
});
