// The claim counter tells a worker with every slot in delivery ('full') from one that found
// nothing due ('empty'): counted as 'empty', a worker saturated by a slow receiver looked idle.
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
import { createTestDb, uniquePrefix, type TestDb } from '../helpers/context.js';
import { eventually } from '../helpers/app.js';

let db: TestDb;
let redis: Redis;
let server: http.Server;
/** Requests held by the receiver until released. */
const held: (() => void)[] = [];
let answered = 0;

beforeAll(async () => {
  db = await createTestDb();
  redis = new Redis(inject('redisUrl'));
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => held.push(() => {
      answered++;
      res.end('ok');
    }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  redis?.disconnect();
  await db?.drop();
});

it("a worker with every slot in delivery counts its claim rounds as 'full', not 'empty'", async () => {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const { rows } = await db.pool.query<{ id: string }>("INSERT INTO areas (name, webhook_url) VALUES ('Slow', $1) RETURNING id", [url]);
  // Two conversations: one slot takes the first, the second waits for it.
  await db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data, created_at)
     SELECT $1, i, 'conversation.assigned', '{}', now() - interval '1 minute' FROM generate_series(1, 2) i`,
    [Number(rows[0]!.id)],
  );
  const metrics = createRouterMetrics(new client.Registry());
  const counts = async () => new Map((await metrics.claims.get()).values.map((v) => [String(v.labels.result), v.value]));
  const webhooks = new WebhookClient({ timeoutMs: 10_000, allowPrivate: true });
  const forwarder = new Forwarder({
    pool: db.pool, log: createLogger('silent'), metrics, client: webhooks,
    circuits: new AreaCircuits(redis, { prefix: uniquePrefix(), threshold: 1000, resetMs: 1000 }),
    schedule: [1], concurrency: 1, pollMs: 20, leaseMs: 30_000, settleMs: 0,
  });
  forwarder.start();
  try {
    await eventually(async () => (held.length === 1 ? true : null), { what: 'the first event in delivery', timeoutMs: 10_000 });
    const before = await counts();
    // The poll tries every 20 ms while the only slot is held.
    await new Promise((r) => setTimeout(r, 300));
    const during = await counts();
    const delta = (k: string) => (during.get(k) ?? 0) - (before.get(k) ?? 0);
    expect(delta('full')).toBeGreaterThan(0);
    expect(delta('empty')).toBe(0);
    held.shift()!();
    await eventually(async () => (held.length === 1 ? true : null), { what: 'the second event in delivery once the slot freed', timeoutMs: 10_000 });
    held.shift()!();
    await eventually(async () => (answered === 2 ? true : null), { what: 'both delivered', timeoutMs: 10_000 });
  } finally {
    while (held.length > 0) held.shift()!();
    await forwarder.stop();
    await webhooks.close();
  }
});
