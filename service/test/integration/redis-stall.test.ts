// Regression (issue 14, defect 7): with Redis connected but not answering writes (a fork or fsync
// stall, a cut-off master; here CLIENT PAUSE WRITE) every webhook waited the whole stall and the
// waiting bodies piled up without a cap. Now: 503 within ENQUEUE_TIMEOUT_MS, 503 at once past
// INGEST_MAX_PENDING_BYTES, and nothing acked is lost; late jobs and Meta's retries store once.
import fs from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { inject } from 'vitest';
import { startRedis, type RedisHandle } from '../../../scripts/stack/redis.js';
import { freePort } from '../../../scripts/stack/proc.js';
import { API_TOKEN, createTestDb, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { contact, inboundEnvelope, textMessage } from '../fixtures/payloads.js';

const DEADLINE_MS = 1_000;
const CAP = 64 * 1024;
let db: TestDb;
let redis: RedisHandle;
let admin: Redis;
let app: RunningApp;
let redisDir: string;
const password = 'stall-pass';
const auth = { authorization: `Bearer ${API_TOKEN}` };

beforeAll(async () => {
  db = await createTestDb();
  redisDir = path.join(inject('stackDir'), `redis-stall-${process.pid}`);
  redis = await startRedis({ dir: redisDir, port: await freePort(), password });
  app = await startApp(db, 'all', { REDIS_URL: redis.url, ENQUEUE_TIMEOUT_MS: String(DEADLINE_MS), INGEST_MAX_PENDING_BYTES: String(CAP), WEBHOOK_MAX_BYTES: String(32 * 1024) });
  admin = new Redis(redis.url, { password });
});
afterAll(async () => {
  await admin?.call('CLIENT', 'UNPAUSE').catch(() => undefined);
  admin?.disconnect();
  await app?.stop();
  await redis?.stop();
  await db?.drop();
  fs.rmSync(redisDir, { recursive: true, force: true });
});

const FROM = '5511955550001';
const bodyFor = (i: number, pad = 0) => JSON.stringify(inboundEnvelope([textMessage({ from: FROM, id: `wamid.STALL-${i}`, body: `stall ${i} ${'x'.repeat(pad)}` })], { contacts: [contact({ waId: FROM })] }));

async function timedPost(body: string): Promise<{ body: string; status: number; ms: number }> {
  const t0 = performance.now();
  const r = await postWebhook(app.url, body);
  return { body, status: r.status, ms: performance.now() - t0 };
}

const pendingBytes = async () => (await app.app.metrics.registry.getSingleMetric('wa_router_ingest_pending_bytes')!.get()).values[0]?.value ?? 0;

it('answers 503 within the deadline while Redis stalls, caps the waiting bytes, and loses nothing acked', async () => {
  expect((await timedPost(bodyFor(0))).status).toBe(200);
  await admin.call('CLIENT', 'PAUSE', '8000', 'WRITE');
  try {
    // Small bodies: they wait for Redis until the deadline.
    const small = await Promise.all(Array.from({ length: 20 }, (_, i) => timedPost(bodyFor(1 + i))));
    for (const r of small) {
      expect(r.status).toBe(503);
      expect(r.ms).toBeLessThan(DEADLINE_MS + 500);
      expect(r.ms).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
    }
    // Their bodies are still held (Redis has not answered): big ones now pass the cap and are
    // refused at once instead of joining them.
    let peak = await pendingBytes();
    const big = await Promise.all(Array.from({ length: 8 }, (_, i) => timedPost(bodyFor(100 + i, 20_000))));
    peak = Math.max(peak, await pendingBytes());
    const refusedAtOnce = big.filter((r) => r.status === 503 && r.ms < 300);
    expect(refusedAtOnce.length).toBeGreaterThanOrEqual(5);
    expect(big.every((r) => r.status === 503)).toBe(true);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(CAP);
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    expect(metrics).toMatch(/wa_router_enqueue_rejections_total\{reason="timeout"\} (2[0-9]|[3-9]\d)/);
    expect(metrics).toMatch(/wa_router_enqueue_rejections_total\{reason="overloaded"\} [1-9]/);

    // Meta retries what was refused; once Redis answers again every body is stored exactly once,
    // late jobs written after their 503 included.
    await admin.call('CLIENT', 'UNPAUSE');
    await eventually(async () => (await pendingBytes()) === 0, { what: 'waiting bytes released' });
    for (const r of [...small, ...big]) expect((await timedPost(r.body)).status).toBe(200);
  } finally {
    await admin.call('CLIENT', 'UNPAUSE');
  }
  const conv = await eventually(async () => {
    const list = await json(await fetch(`${app.url}/v1/conversations?limit=10`, { headers: auth }));
    const c = list.data.find((x: { contact: { waId: string } }) => x.contact.waId === FROM);
    return c?.unreadCount >= 29 ? c : null;
  }, { timeoutMs: 20_000, what: 'all 29 messages stored' });
  await new Promise((r) => setTimeout(r, 500));
  const messages = await json(await fetch(`${app.url}/v1/conversations/${conv.id}/messages?limit=100`, { headers: auth }));
  const wamids = messages.data.map((m: { wamid: string }) => m.wamid).sort();
  expect(wamids).toHaveLength(29);
  expect(new Set(wamids).size).toBe(29);
  const again = await json(await fetch(`${app.url}/v1/conversations?limit=10`, { headers: auth }));
  expect(again.data.find((x: { id: number }) => x.id === conv.id).unreadCount).toBe(29);
});
