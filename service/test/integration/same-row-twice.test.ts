// Regression: one statement cannot change the same row twice (every CTE and join row works on one
// snapshot; Postgres applies one change and silently drops the other). Each multi-row statement
// that could meet a row twice is pinned here with the input that would make it do so.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordOutcomes } from '../../src/router/forwarding/outbox.js';
import { createTestDb, type TestDb } from '../helpers/context.js';

let db: TestDb;
beforeAll(async () => {
  db = await createTestDb();
});
afterAll(async () => {
  await db?.drop();
});

describe('recordOutcomes', () => {
  it('counts both attempts of an event that comes twice in one batch, and keeps the later outcome', async () => {
    // Twice in a batch: the event's lease ran out while its first outcome waited to be recorded,
    // and it was claimed and delivered again.
    const { rows: [area] } = await db.pool.query<{ id: number }>("INSERT INTO areas (name, webhook_url) VALUES ('twice', 'http://127.0.0.1:9/x') RETURNING id");
    const { rows: [event] } = await db.pool.query<{ id: number }>("INSERT INTO forward_events (area_id, type) VALUES ($1, 'ping') RETURNING id", [area!.id]);
    const base = { id: event!.id, areaId: area!.id, body: '{}', latencyMs: 5, response: null };
    await recordOutcomes(db.pool, [
      { ...base, status: 'pending', nextAttemptAt: new Date(Date.now() + 5_000), statusCode: 500, error: 'HTTP 500' },
      { ...base, status: 'succeeded', nextAttemptAt: new Date(), statusCode: 200, error: null },
    ]);
    const { rows } = await db.pool.query('SELECT status, attempts, last_status, finished_at IS NOT NULL AS finished FROM forward_events WHERE id = $1', [event!.id]);
    expect(rows[0]).toEqual({ status: 'succeeded', attempts: 2, last_status: 200, finished: true });
    const attempts = await db.pool.query('SELECT status_code FROM forward_attempts WHERE event_id = $1 ORDER BY id', [event!.id]);
    expect(attempts.rows.map((r) => r.status_code)).toEqual([500, 200]);
  });
});
