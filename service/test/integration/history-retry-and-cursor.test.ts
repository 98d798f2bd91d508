// Regressions (issue 14, defect 9): a retried history job counted its chunks again in
// chunksReceived; a tampered cursor with an impossible date answered 500 instead of 400.
import pg from 'pg';
import { expect, it } from 'vitest';
import { envelope, historyChange, historyThread } from '../fixtures/payloads.js';
import { API_TOKEN } from '../helpers/context.js';
import { appForFile, eventually, json, postWebhook } from '../helpers/app.js';

const stack = appForFile('all');
const auth = { authorization: `Bearer ${API_TOKEN}` };


const blockedOnChunks = async () =>
  (await stack.db.pool.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%sync_chunks%'")).rows;

it('a retried history job does not count its chunk twice in chunksReceived', async () => {
  const locker = new pg.Client({ connectionString: stack.db.url });
  await locker.connect();
  try {
    // Applying the chunk waits on this lock, after its receipt was counted; the test then cuts the
    // worker's connection, a transient failure after which the job runs again.
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE sync_chunks IN EXCLUSIVE MODE');
    const body = JSON.stringify(envelope(historyChange({ phase: 0, chunkOrder: 1, progress: 30, threads: [historyThread({ waId: '5511966660001', count: 4 })] })));
    expect((await postWebhook(stack.app.url, body)).status).toBe(200);
    const [first] = await eventually(async () => { const r = await blockedOnChunks(); return r.length > 0 ? r : null; }, { what: 'first attempt waiting on the lock' });
    await stack.db.pool.query('SELECT pg_terminate_backend($1)', [first!.pid]);
    await eventually(async () => { const r = await blockedOnChunks(); return r.length > 0 && r[0]!.pid !== first!.pid ? r : null; }, { what: 'the retry waiting on the lock' });
  } finally {
    await locker.query('COMMIT').catch(() => undefined);
    await locker.end();
  }
  const channelId = (await stack.db.pool.query('SELECT id FROM channels LIMIT 1')).rows[0].id;
  const sync = await eventually(async () => {
    const s = await json(await fetch(`${stack.app.url}/v1/channels/${channelId}/sync`, { headers: auth }));
    return s.chunksApplied === 1 ? s : null;
  }, { what: 'chunk applied' });
  expect(sync).toMatchObject({ chunksReceived: 1, chunksApplied: 1, messagesStored: 4 });
});

it.each([
  ['month 13', '2025-13-01 10:00:00.123456+00'],
  ['February 30', '2025-02-30 10:00:00+00'],
  ['hour 25', '2025-01-01 25:00:00+00'],
  ['offset +99', '2025-01-01 10:00:00+99'],
])('answers 400 to a tampered cursor with an impossible date (%s)', async (_what, t) => {
  const cursor = Buffer.from(JSON.stringify({ t, id: 1 })).toString('base64url');
  for (const path of ['/v1/conversations', '/v1/conversations/1/messages']) {
    const res = await fetch(`${stack.app.url}${path}?cursor=${cursor}`, { headers: auth });
    expect(res.status).toBe(400);
    expect((await json(res)).error.code).toBe('invalid_cursor');
  }
});
