// Wake-ups: each stored event is claimed once it has settled, woken by its own store, even when
// another store's wake-up was already pending (with the poll far away, nothing else would claim it).
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

const SETTLE_MS = 2_000;
let db: TestDb;
let redis: Redis;
let server: http.Server;
const arrivals = new Map<number, number>();

beforeAll(async () => {
  db = await createTestDb();
  redis = new Redis(inject('redisUrl'));
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      arrivals.set((JSON.parse(Buffer.concat(chunks).toString()) as { data: { c: number } }).data.c, Date.now());
      res.end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  redis?.disconnect();
  await db?.drop();
});

it('an event stored while another store\'s wake-up is pending is claimed at its own settle time, not at the poll', async () => {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const { rows } = await db.pool.query<{ id: string }>("INSERT INTO areas (name, webhook_url) VALUES ('Wake', $1) RETURNING id", [url]);
  const areaId = Number(rows[0]!.id);
  const webhook = new WebhookClient({ timeoutMs: 5_000, allowPrivate: true });
  const forwarder = new Forwarder({
    pool: db.pool, log: createLogger('silent'), metrics: createRouterMetrics(new client.Registry()), client: webhook,
    circuits: new AreaCircuits(redis, { prefix: uniquePrefix(), threshold: 1000, resetMs: 1000 }),
    schedule: [0.1], concurrency: 10, pollMs: 600_000, leaseMs: 30_000, settleMs: SETTLE_MS,
  });
  // Stored like the inbound path stores: committed, then the worker told.
  const store = async (c: number) => {
    await db.pool.query("INSERT INTO forward_events (area_id, conversation_id, type, data) VALUES ($1, $2::bigint, 'conversation.assigned', jsonb_build_object('c', $3::int))", [areaId, c, c]);
    const at = Date.now();
    forwarder.wake();
    return at;
  };
  forwarder.start();
  try {
    // The first claim (at start) found nothing: the worker now sleeps until a wake-up or the poll.
    await new Promise((r) => setTimeout(r, 200));
    const first = await store(1);
    // Half a settle time later: the claims that follow the first delivery are long over when it settles.
    await new Promise((r) => setTimeout(r, SETTLE_MS / 2));
    const second = await store(2);
    await eventually(async () => (arrivals.size === 2 ? true : null), { what: 'both events delivered long before the poll', timeoutMs: 15_000 });
    // Never before they settled.
    expect(arrivals.get(1)! - first).toBeGreaterThanOrEqual(SETTLE_MS - 10);
    expect(arrivals.get(2)! - second).toBeGreaterThanOrEqual(SETTLE_MS - 10);
  } finally {
    await forwarder.stop();
    await webhook.close();
  }
}, 30_000);
