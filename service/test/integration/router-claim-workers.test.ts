// Two workers (as two processes would, each with its own fitted run lengths) draining the same
// area through a receiver whose speed varies, so runs are cut at different lengths: every event
// arrives once, and each conversation's in order.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import client from 'prom-client';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { AreaCircuits } from '../../src/router/forwarding/circuit.js';
import { Forwarder } from '../../src/router/forwarding/forwarder.js';
import { WebhookClient } from '../../src/router/forwarding/http-client.js';
import { createRouterMetrics } from '../../src/router/metrics.js';
import { eventually } from '../helpers/app.js';
import { createTestDb, uniquePrefix, type TestDb } from '../helpers/context.js';

const CONVERSATIONS = 12;
const PER = 40;
let db: TestDb;
let redis: Redis;
let server: http.Server;
const received: { c: number; n: number }[] = [];

beforeAll(async () => {
  db = await createTestDb();
  redis = new Redis(inject('redisUrl'));
  let k = 0;
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => setTimeout(() => {
      const d = (JSON.parse(Buffer.concat(chunks).toString()) as { data: { c: number; n: number } }).data;
      received.push({ c: d.c, n: d.n });
      res.end('ok');
    }, ++k % 7 === 0 ? 120 : k % 3));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  redis?.disconnect();
  await db?.drop();
});

it('two workers with their own fitted runs deliver every event once, each conversation in order', async () => {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const { rows } = await db.pool.query<{ id: string }>("INSERT INTO areas (name, webhook_url) VALUES ('Varying', $1) RETURNING id", [url]);
  await db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data, sort_at, created_at)
     SELECT $1, c, 'conversation.assigned', jsonb_build_object('c', c, 'n', i), now() - interval '1 minute' + i * interval '1 ms', now() - interval '1 minute'
     FROM generate_series(1, $2::int) c, generate_series(1, $3::int) i`,
    [Number(rows[0]!.id), CONVERSATIONS, PER],
  );
  const prefix = uniquePrefix();
  const webhooks = [new WebhookClient({ timeoutMs: 5_000, allowPrivate: true }), new WebhookClient({ timeoutMs: 5_000, allowPrivate: true })];
  const workers = webhooks.map((w) => new Forwarder({
    pool: db.pool, log: createLogger('silent'), metrics: createRouterMetrics(new client.Registry()), client: w,
    circuits: new AreaCircuits(redis, { prefix, threshold: 1000, resetMs: 1000 }),
    schedule: [0.1], concurrency: 6, perAreaConcurrency: 6, runLength: 50, runWindowMs: 100, pollMs: 10, leaseMs: 30_000, settleMs: 0,
  }));
  for (const w of workers) w.start();
  try {
    await eventually(async () => (received.length >= CONVERSATIONS * PER ? true : null), { what: 'every event delivered', timeoutMs: 90_000 });
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await Promise.all(webhooks.map((w) => w.close()));
  }
  expect(received.length).toBe(CONVERSATIONS * PER);
  for (let c = 1; c <= CONVERSATIONS; c++) {
    expect(received.filter((r) => r.c === c).map((r) => r.n)).toEqual(Array.from({ length: PER }, (_, i) => i + 1));
  }
}, 120_000);
