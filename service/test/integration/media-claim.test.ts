// The media poller's claim: what it takes (media not queued yet, live before history; media
// queued long ago, whose job a crash may have lost), what it leaves (media queued and still
// downloading), and that a poll during a history backlog reads only the rows it takes.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MediaRepo } from '../../src/media/repo.js';
import { createTestDb, type TestDb } from '../helpers/context.js';

/** What the worker passes: a claimed download not done after 10 minutes is queued again. */
const REQUEUE_AFTER_MS = 10 * 60_000;

let db: TestDb;
/** One connection: the statistics it flushes are those of the claims it ran. */
let one: pg.Pool;
let repo: MediaRepo;
let channelId = 0;

beforeAll(async () => {
  db = await createTestDb();
  one = new pg.Pool({ connectionString: db.url, max: 1 });
  repo = new MediaRepo(one);
  const { rows } = await db.pool.query<{ id: number }>("INSERT INTO channels (phone_number_id) VALUES ('media-claim-1') RETURNING id::int");
  channelId = rows[0]!.id;
});
afterAll(async () => {
  await one?.end();
  await db?.drop();
});

type Queued = 'no' | 'now' | 'long ago';
const QUEUED_AT: Record<Queued, string> = { no: 'NULL', now: 'now()', 'long ago': "now() - interval '1 hour'" };

/** Pending inbound media, in this order of ids. */
async function add(rows: readonly [live: boolean, queued: Queued][]): Promise<number[]> {
  const ids: number[] = [];
  for (const [live, queued] of rows) {
    const { rows: [r] } = await db.pool.query<{ id: number }>(
      `INSERT INTO media (channel_id, meta_id, origin, live, type, enqueued_at) VALUES ($1, gen_random_uuid()::text, 'inbound', $2, 'image', ${QUEUED_AT[queued]}) RETURNING id::int`,
      [channelId, live],
    );
    ids.push(r!.id);
  }
  return ids;
}

const claimed = async (limit: number) => (await repo.claimToEnqueue(limit, REQUEUE_AFTER_MS)).map((r) => r.id).sort((a, b) => a - b);

it('takes live media before history, media queued long ago again, and leaves media still downloading', async () => {
  const [history, live, lostHistory, lostLive, busyHistory, busyLive, history2, live2] = await add([
    [false, 'no'], [true, 'no'], [false, 'long ago'], [true, 'long ago'], [false, 'now'], [true, 'now'], [false, 'no'], [true, 'no'],
  ]);
  await db.pool.query("INSERT INTO media (channel_id, meta_id, origin, type, status, storage_key) VALUES ($1, 'done', 'inbound', 'image', 'stored', 'k')", [channelId]);
  expect(await claimed(3), 'the live media, queued or lost').toEqual([live, lostLive, live2]);
  expect(await claimed(2), 'then history by id').toEqual([history, lostHistory]);
  expect(await claimed(10)).toEqual([history2]);
  expect(await claimed(10), `left downloading: ${busyHistory}, ${busyLive}`).toEqual([]);
  await db.pool.query('DELETE FROM media WHERE channel_id = $1', [channelId]);
});

it('reads only the rows it takes from a backlog of 20,000 history media, queued or downloading', async () => {
  // Beside 100,000 media stored before (most of the table, as it grows).
  await db.pool.query(
    `INSERT INTO media (channel_id, meta_id, origin, live, type, status, storage_key, sha256)
     SELECT $1, 'kept-' || g, 'inbound', g % 2 = 0, 'image', 'stored', 'k' || g, md5(g::text) FROM generate_series(1, 100000) g`,
    [channelId],
  );
  await db.pool.query(
    `INSERT INTO media (channel_id, meta_id, origin, live, type)
     SELECT $1, 'backlog-' || g, 'inbound', false, 'image' FROM generate_series(1, 20000) g`,
    [channelId],
  );
  await db.pool.query('ANALYZE media');
  // Table statistics of this connection's own statements, flushed when it goes idle.
  const tuplesRead = async () => {
    await one.query('SELECT pg_stat_force_next_flush()');
    await one.query('SELECT pg_stat_clear_snapshot()');
    const { rows: [r] } = await one.query<{ n: string }>("SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS n FROM pg_stat_user_tables WHERE relname = 'media'");
    return Number(r!.n);
  };
  // Each taken row is read by its part of the claim and again by the update.
  let before = await tuplesRead();
  expect(await claimed(500)).toHaveLength(500);
  expect((await tuplesRead()) - before, 'media rows read by the first claim of the backlog').toBeLessThanOrEqual(2 * 500);
  while ((await claimed(500)).length > 0);
  // The backlog queued and downloading; a few media arrive meanwhile.
  const fresh = await add([[false, 'no'], [true, 'no'], [false, 'long ago']]);
  await db.pool.query('VACUUM ANALYZE media');
  before = await tuplesRead();
  expect(await claimed(500)).toEqual(fresh);
  expect((await tuplesRead()) - before, 'media rows read by a claim while the backlog downloads').toBeLessThanOrEqual(2 * fresh.length);
});
