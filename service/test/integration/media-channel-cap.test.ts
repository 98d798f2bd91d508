// The per-channel cap on history media downloads: one channel's backlog of slow history media
// takes at most MEDIA_CHANNEL_CONCURRENCY of the worker's MEDIA_CONCURRENCY slots, so another
// channel's history media arriving behind it is downloaded at once; the backlog still finishes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import type { SimMediaItem } from '../../../scripts/graph-sim/media.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, testEnv, type TestDb } from '../helpers/context.js';
import { eventually, json, startApp, type RunningApp } from '../helpers/app.js';
import { bytesOf } from '../helpers/media.js';

const SECOND_NUMBER = '106540352243222';
let db: TestDb;
let sim: GraphSimulator;
let app: RunningApp;
const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };

/** History messages (a coexistence import) carrying these media, in one conversation of the channel. */
async function historyMedia(channelId: number, waId: string, items: SimMediaItem[]): Promise<void> {
  await db.pool.query(
    `WITH ct AS (INSERT INTO contacts (wa_id) VALUES ($2) RETURNING id),
          cv AS (INSERT INTO conversations (channel_id, contact_id) SELECT $1, ct.id FROM ct RETURNING id, channel_id, contact_id)
     INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, source, type, media_id, media_mime_type, raw, wa_timestamp, status)
     SELECT 'wamid.cap.' || m, cv.channel_id, cv.id, cv.contact_id, 'inbound', 'history', 'image', m, 'image/jpeg', '{}', now(), 'received'
       FROM cv, unnest($3::text[]) m`,
    [channelId, waId, items.map((i) => i.id)],
  );
}

const storedOf = async (items: SimMediaItem[]) =>
  (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM media WHERE meta_id = ANY($1::text[]) AND status = 'stored'", [items.map((i) => i.id)])).rows[0]!.n;

beforeAll(async () => {
  [db, sim] = await Promise.all([
    createTestDb(),
    // 100 KB/s per download: a 400 KB image takes 4 s.
    startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token', [SECOND_NUMBER]: 'second-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 1, mediaBytesPerSecond: 100_000 } }),
  ]);
  app = await startApp(db, 'all', testEnv(db, { GRAPH_API_BASE_URL: sim.url, MEDIA_POLL_MS: '50', MEDIA_CONCURRENCY: '4', MEDIA_CHANNEL_CONCURRENCY: '2' }));
});
afterAll(async () => {
  await app?.stop();
  await sim?.close();
  await db?.drop();
});

describe('history media per channel', () => {
  it("leave slots to another channel while one channel's backlog downloads, and the backlog completes", async () => {
    const first = (await db.pool.query<{ id: number }>('SELECT id::int FROM channels WHERE phone_number_id = $1', [PHONE_NUMBER_ID])).rows[0]!.id;
    const created = await fetch(`${app.url}/v1/channels`, { method: 'POST', headers: auth, body: JSON.stringify({ phoneNumberId: SECOND_NUMBER, accessToken: 'second-access-token' }) });
    expect(created.status).toBe(201);
    const second = (await json(created)).id as number;

    const backlog = Array.from({ length: 6 }, () => sim.media.add(bytesOf(400_000), 'image/jpeg'));
    await historyMedia(first, '5511944440001', backlog);
    await eventually(async () => backlog.filter((i) => i.served > 0).length >= 2, { what: 'backlog downloads started', timeoutMs: 30_000 });
    // Time for the other free slots to take more of the backlog, as they would without the cap.
    await new Promise((r) => setTimeout(r, 500));

    const other = [sim.media.add(bytesOf(2_000), 'image/jpeg')];
    await historyMedia(second, '5511944440002', other);
    await eventually(async () => (await storedOf(other)) === 1, { what: "the other channel's media stored", timeoutMs: 30_000 });
    expect(await storedOf(backlog), "backlog media stored before the other channel's").toBe(0);
    expect(backlog.filter((i) => i.served > 0).length, 'backlog downloads started').toBe(2);

    // Parked downloads are woken as slots free, not after their fallback (minutes).
    await eventually(async () => (await storedOf(backlog)) === backlog.length, { what: 'the whole backlog stored', timeoutMs: 60_000 });
  });
});
