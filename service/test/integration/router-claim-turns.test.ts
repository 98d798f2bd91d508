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
import { claimRuns } from '../../src/router/forwarding/outbox.js';
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

it('a claim that wrapped around to the first conversations goes on after the last one it took there, not after the highest', async () => {
  const { rows } = await db.pool.query<{ id: string }>("INSERT INTO areas (name, webhook_url) VALUES ('Wrap', 'http://127.0.0.1:9/') RETURNING id");
  const area = Number(rows[0]!.id);
  await db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data, sort_at, created_at, next_attempt_at)
     SELECT $1, c, 'conversation.assigned', jsonb_build_object('c', c), now() - interval '1 minute' + i * interval '1 ms', now() - interval '1 minute', now() - interval '1 minute'
     FROM generate_series(1, $2::int) c, generate_series(1, 3) i ORDER BY c, i`,
    [area, CONVERSATIONS],
  );
  /** One claim of `slots` queues with runs of one event; its events delivered at once. Gives the conversations it served. */
  const claim = async (slots: number) => {
    const events = (await claimRuns(db.pool, {
      queues: slots, runLength: 1, leaseMs: 30_000, settleMs: 0, maxOrderWaitMs: 10_000,
      skipAreas: [], areaCaps: new Map(), defaultCap: slots, runLengths: new Map(),
    })).flat().filter((e) => e.areaId === area);
    await db.pool.query("UPDATE forward_events SET status = 'succeeded', attempts = 1, finished_at = now(), locked_until = NULL WHERE id = ANY($1::bigint[])", [events.map((e) => e.id)]);
    return events.map((e) => e.conversationId!).sort((a, b) => a - b);
  };
  expect(await claim(3)).toEqual([1, 2, 3]);
  expect(await claim(3)).toEqual([4, 5, 6]);
  // From after 6 to the end, then from the start: the walk ends at 2.
  expect(await claim(4)).toEqual([1, 2, 7, 8]);
  // 3 to 6 waited longer than 1 and 2, just served again.
  expect(await claim(4)).toEqual([3, 4, 5, 6]);
});
