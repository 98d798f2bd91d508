// Review proofs (expected to FAIL on the current code): each test states what a user is owed
// and drives the race or ordering that breaks it, against the real Postgres and Redis.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { claimRuns, disableArea, recordOutcomes } from '../../src/router/forwarding/outbox.js';
import { assignConversation } from '../../src/router/routing/assignments.js';
import { RouteCache } from '../../src/router/routing/route-cache.js';
import { createTestDb, uniquePrefix, type TestDb } from '../helpers/context.js';
import { eventually } from '../helpers/app.js';
import type { Logger } from '../../src/log.js';

let db: TestDb;
let redis: Redis;
const silent = { warn: () => undefined, info: () => undefined, error: () => undefined, debug: () => undefined } as unknown as Logger;

beforeAll(async () => {
  db = await createTestDb();
  redis = new Redis(inject('redisUrl'));
});
afterAll(async () => {
  redis?.disconnect();
  await db?.drop();
});

let n = 0;
async function conversation(): Promise<number> {
  n++;
  const ch = await db.pool.query<{ id: number }>("INSERT INTO channels (phone_number_id) VALUES ($1) RETURNING id", [`proof-${n}-${Date.now()}`]);
  const ct = await db.pool.query<{ id: number }>('INSERT INTO contacts (wa_id) VALUES ($1) RETURNING id', [`55119${Date.now()}${n}`]);
  const cv = await db.pool.query<{ id: number }>('INSERT INTO conversations (channel_id, contact_id) VALUES ($1, $2) RETURNING id', [ch.rows[0]!.id, ct.rows[0]!.id]);
  return Number(cv.rows[0]!.id);
}
async function area(name: string): Promise<number> {
  const { rows } = await db.pool.query<{ id: string }>("INSERT INTO areas (name, webhook_url) VALUES ($1, 'http://127.0.0.1:9/x') RETURNING id", [name]);
  return Number(rows[0]!.id);
}

it('an event queued while its area is being disabled is dead-lettered, not left pending forever', async () => {
  const conv = await conversation();
  const areaId = await area('Racing');
  const c = await db.pool.connect();
  try {
    // An assignment (API or menu) is in flight: its transaction queued conversation.assigned ...
    await c.query('BEGIN');
    await assignConversation(db.pool, conv, areaId, 'api', c);
    // ... while the receiver answers 410 (or PATCH enabled:false) disables the area and dead-letters
    // its pending events: it does not wait for, nor see, the uncommitted one.
    expect(await disableArea(db.pool, areaId, 'the webhook answered 410 Gone')).toEqual({ deadLettered: 0 });
    await c.query('COMMIT');
  } finally {
    c.release();
  }
  const { rows } = await db.pool.query<{ status: string }>('SELECT status FROM forward_events WHERE area_id = $1', [areaId]);
  // Observed: 'pending' for a disabled area: no claim takes it (areas.disabled_at IS NULL), it is not
  // dead so the replay endpoint refuses it, and it shows in the backlog gauge forever.
  expect(rows.map((r) => r.status)).toEqual(['dead']);
});

it('a late failed outcome of an event never turns a delivered event back into pending', async () => {
  const conv = await conversation();
  const areaId = await area('Late');
  const { rows } = await db.pool.query<{ id: string }>(
    "INSERT INTO forward_events (area_id, conversation_id, type, data, created_at) VALUES ($1, $2, 'conversation.assigned', '{}', now() - interval '1 minute') RETURNING id",
    [areaId, conv],
  );
  const id = Number(rows[0]!.id);
  const outcome = (status: 'succeeded' | 'pending') => ({ id, areaId, body: status === 'succeeded' ? null : '{}', status, nextAttemptAt: new Date(Date.now() - 1000), statusCode: status === 'succeeded' ? 200 : 500, latencyMs: 1, error: null, response: null });
  // Worker B (after A's lease ran out) delivered it and recorded success; worker A's failure of the
  // same event is recorded afterwards.
  await recordOutcomes(db.pool, [outcome('succeeded')]);
  await recordOutcomes(db.pool, [outcome('pending')]);
  const claimed = await claimRuns(db.pool, { queues: 10, runLength: 5, leaseMs: 30_000, settleMs: 0, skipAreas: [], areaCaps: new Map(), defaultCap: 10, headOnlyAreas: [] });
  // Observed: the delivered event is pending again and claimed for a second delivery, after
  // whatever followed it in the conversation (order per conversation broken for the receiver).
  expect(claimed.flat().map((e) => e.id)).not.toContain(id);
});

it('a route cache fill read before a release never outlives the void that followed the release', async () => {
  const prefix = uniquePrefix();
  const cache = new RouteCache(redis, silent, { prefix });
  const conv = 4242;
  // Assigned to area 7 at version 3, cached.
  await cache.changed([{ conversationId: conv, version: 3, areaId: 7 }]);
  // The engine read Postgres (version 3, assigned to 7) for a batch; before its fill, a release
  // commits (version 4) and the releasing process cannot reach Redis: it voids the cache (gen bump).
  const unreachable = new Redis({ port: 1, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  unreachable.on('error', () => undefined);
  const releasing = new RouteCache(unreachable, silent, { prefix });
  await releasing.changed([{ conversationId: conv, version: 4, areaId: null }]);
  // Its void retries until Redis answers; here Redis is back, and the bump lands.
  await redis.incr(`${prefix}:router:route-gen`);
  await eventually(async () => ((await cache.read([conv]))?.routes.has(conv) ? null : true), { what: 'the cache voided' });
  // Now the engine's fill from its earlier read lands.
  await cache.fill([{ conversationId: conv, version: 3, areaId: 7 }]);
  // Observed: 7. The released conversation is "assigned" from the cache for up to the 1 h TTL: the
  // menu never answers the customer.
  expect((await cache.read([conv]))?.routes.get(conv)).not.toBe(7);
  unreachable.disconnect();
});

it("an area deleted while one of its runs is in delivery does not void the other areas' recorded outcomes", async () => {
  const conv = await conversation();
  const kept = await area('Kept');
  const deleted = await area('Deleted meanwhile');
  const insert = async (areaId: number) => Number((await db.pool.query<{ id: string }>(
    "INSERT INTO forward_events (area_id, conversation_id, type, data, created_at) VALUES ($1, $2, 'conversation.assigned', '{}', now() - interval '1 minute') RETURNING id",
    [areaId, conv],
  )).rows[0]!.id);
  const keptEvent = await insert(kept);
  const goneEvent = await insert(deleted);
  // Both were claimed and delivered by one worker; DELETE /v1/areas/:id commits before the
  // worker's outcome batch (its events cascade away).
  await db.pool.query('DELETE FROM areas WHERE id = $1', [deleted]);
  const ok = (id: number, areaId: number) => ({ id, areaId, body: null, status: 'succeeded' as const, nextAttemptAt: new Date(), statusCode: 200, latencyMs: 1, error: null, response: null });
  // Observed: forward_attempts_event_id_fkey violation: the whole batch (every area's runs in it)
  // is rejected, three times, then dropped: every delivered event of it goes out again after its lease.
  await expect(recordOutcomes(db.pool, [ok(keptEvent, kept), ok(goneEvent, deleted)])).resolves.toBeUndefined();
  const { rows } = await db.pool.query<{ status: string }>('SELECT status FROM forward_events WHERE id = $1', [keptEvent]);
  expect(rows[0]!.status).toBe('succeeded');
});
