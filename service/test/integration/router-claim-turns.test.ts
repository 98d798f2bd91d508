// Every waiting conversation gets its turn. A claim walks an area's queues only until it found as
// many due heads as the area may take, starting after the queue it took last: with fewer slots
// than conversations waiting, a queue whose run just ended must not be taken again ahead of the
// queues that waited all along (walking from the first conversation every time would serve the
// first few conversations over and over while the others wait).
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

const CONVERSATIONS = 8;
const EACH = 4;
let db: TestDb;
let redis: Redis;
let server: http.Server;
/** Conversation of each delivered event, in arrival order. */
const received: number[] = [];

beforeAll(async () => {
  db = await createTestDb();
  redis = new Redis(inject('redisUrl'));
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push((JSON.parse(Buffer.concat(chunks).toString()) as { data: { c: number } }).data.c);
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

it('with one slot and runs of one event, the queues take turns: every conversation before any one twice', async () => {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const { rows } = await db.pool.query<{ id: string }>("INSERT INTO areas (name, webhook_url) VALUES ('Turns', $1) RETURNING id", [url]);
  // Each conversation's events stored together, conversation after conversation (ids and due
  // times in that order), long settled.
  await db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data, sort_at, created_at, next_attempt_at)
     SELECT $1, c, 'conversation.assigned', jsonb_build_object('c', c), now() - interval '1 minute' + i * interval '1 ms', now() - interval '1 minute', now() - interval '1 minute'
     FROM generate_series(1, $2::int) c, generate_series(1, $3::int) i ORDER BY c, i`,
    [Number(rows[0]!.id), CONVERSATIONS, EACH],
  );
  const webhooks = new WebhookClient({ timeoutMs: 5_000, allowPrivate: true });
  const forwarder = new Forwarder({
    pool: db.pool, log: createLogger('silent'), metrics: createRouterMetrics(new client.Registry()), client: webhooks,
    circuits: new AreaCircuits(redis, { prefix: uniquePrefix(), threshold: 1000, resetMs: 1000 }),
    schedule: [1], concurrency: 1, runLength: 1, pollMs: 20, leaseMs: 30_000, settleMs: 0,
  });
  forwarder.start();
  try {
    await eventually(async () => received.length >= CONVERSATIONS * EACH, { what: 'every event delivered', timeoutMs: 60_000 });
  } finally {
    await forwarder.stop();
    await webhooks.close();
  }
  // Round after round, each conversation once per round.
  for (let round = 0; round < EACH; round++) {
    expect(new Set(received.slice(round * CONVERSATIONS, (round + 1) * CONVERSATIONS)).size, `round ${round + 1}: ${received.join(',')}`).toBe(CONVERSATIONS);
  }
});
