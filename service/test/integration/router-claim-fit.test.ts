// A receiver slower than the run window: a run delivers a few events before the window ends it,
// and the rest of the queue waits for the next claim. Each claim must take about what the area
// gets through, not a full run whose undelivered rest is read, built and claimed again every
// round (the claim's rows per delivered event is what a busy worker pays in Postgres).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import client from 'prom-client';
import { AreaCircuits } from '../../src/router/forwarding/circuit.js';
import { Forwarder } from '../../src/router/forwarding/forwarder.js';
import { WebhookClient } from '../../src/router/forwarding/http-client.js';
import { createRouterMetrics } from '../../src/router/metrics.js';
import type { Pool } from '../../src/store/pool.js';
import { createTestDb, uniquePrefix, type TestDb } from '../helpers/context.js';
import { eventually } from '../helpers/app.js';

const EVENTS = 60;
let db: TestDb;
let redis: Redis;
let server: http.Server;
const received: number[] = [];

beforeAll(async () => {
  db = await createTestDb();
  redis = new Redis(inject('redisUrl'));
  // 40 ms per answer: about 4 events of a run fit in its 150 ms window.
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => setTimeout(() => {
      received.push((JSON.parse(Buffer.concat(chunks).toString()) as { data: { n: number } }).data.n);
      res.end('ok');
    }, 40));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  redis?.disconnect();
  await db?.drop();
});

it('a claim takes what the area gets through in a run window, not a full run claimed again and again', async () => {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const { rows } = await db.pool.query<{ id: string }>("INSERT INTO areas (name, webhook_url) VALUES ('Slow', $1) RETURNING id", [url]);
  const areaId = Number(rows[0]!.id);
  await db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data, sort_at, created_at)
     SELECT $1, 1, 'conversation.assigned', jsonb_build_object('n', i), now() - interval '1 minute' + i * interval '1 ms', now() - interval '1 minute' FROM generate_series(1, $2::int) i`,
    [areaId, EVENTS],
  );
  // The real pool, with the rows of each claim counted.
  let claimed = 0;
  const query = db.pool.query.bind(db.pool) as (...args: unknown[]) => Promise<{ rowCount: number | null }>;
  const pool = Object.assign(Object.create(db.pool) as Pool, {
    query: async (...args: unknown[]) => {
      const r = await query(...args);
      if (String(args[0]).includes('WITH RECURSIVE allowed')) claimed += r.rowCount ?? 0;
      return r;
    },
  });
  const webhooks = new WebhookClient({ timeoutMs: 5_000, allowPrivate: true });
  const forwarder = new Forwarder({
    pool, log: createLogger('silent'), metrics: createRouterMetrics(new client.Registry()), client: webhooks,
    circuits: new AreaCircuits(redis, { prefix: uniquePrefix(), threshold: 1000, resetMs: 1000 }),
    schedule: [0.1], concurrency: 10, runLength: 50, runWindowMs: 150, pollMs: 20, leaseMs: 30_000, settleMs: 0,
  });
  forwarder.start();
  try {
    await eventually(async () => (received.length >= EVENTS ? true : null), { what: 'every event delivered', timeoutMs: 60_000 });
  } finally {
    await forwarder.stop();
    await webhooks.close();
  }
  expect(received).toEqual(Array.from({ length: EVENTS }, (_, i) => i + 1));
  // A full run claimed each round is ~8.6 claimed per delivered event here. Fitted runs stay near
  // 1.5 on a quiet machine; on a loaded one a window may fit a single event (2 claimed for 1) after
  // the first full claim, hence the margin.
  expect(claimed / EVENTS).toBeLessThan(4);
});
