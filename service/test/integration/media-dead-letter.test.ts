// Media downloads that fail for good: the dead letter is recorded on the message's media even when
// the worker's write of it was lost (the poller finds the row still pending, its job failed), and
// replaying the dead letter downloads the media.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, testEnv, type TestDb } from '../helpers/context.js';
import { eventually, json, startApp, type RunningApp } from '../helpers/app.js';
import { bytesOf, mediaOf, receiveMedia } from '../helpers/media.js';

let db: TestDb;
let sim: GraphSimulator;
let app: RunningApp;
const auth = { authorization: `Bearer ${API_TOKEN}` };

const statusOf = (wamid: string, status: string) => eventually(async () => {
  const m = await mediaOf(db, wamid);
  return m?.status === status ? m : null;
}, { what: `media of ${wamid} ${status}`, timeoutMs: 30_000 });

beforeAll(async () => {
  [db, sim] = await Promise.all([
    createTestDb(),
    startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 1 } }),
  ]);
  app = await startApp(db, 'all', testEnv(db, { GRAPH_API_BASE_URL: sim.url, MEDIA_ATTEMPTS: '1', MEDIA_BACKOFF_MS: '100', MEDIA_POLL_MS: '50' }));
});
afterAll(async () => {
  await app?.stop();
  await sim?.close();
  await db?.drop();
});

it('records a dead-lettered download as failed even when the worker lost that write, and a replay of the dead letter stores it', async () => {
  // Meta answers 5xx to the one attempt there is.
  sim.configure({ mediaMetadataFailures: 1 });
  const bytes = bytesOf(20_000);
  const { wamid } = await receiveMedia(app.url, sim, 'image', bytes, 'image/png');
  const failed = await statusOf(wamid, 'failed');
  expect(failed.errorCode).toBe('download_failed');
  // The worker's write of the failure was lost (the database away at that moment): the row is
  // still pending, claimed long ago, and its job is kept failed under the same id.
  await db.pool.query("UPDATE media SET status = 'pending', error_code = NULL, error_reason = NULL, enqueued_at = now() - interval '11 minutes' WHERE id = $1", [failed.id]);
  const again = await statusOf(wamid, 'failed');
  expect(again.errorCode).toBe('download_failed');
  expect(again.errorReason).toContain('131000');

  const letters = await json(await fetch(`${app.url}/v1/dead-letters?queue=media`, { headers: auth }));
  const letter = (letters.items as { id: string }[]).find((l) => l.id === `media:m${failed.id}`);
  expect(letter, 'the download among the dead letters').toBeDefined();
  const replay = await fetch(`${app.url}/v1/dead-letters/${letter!.id}/replay`, { method: 'POST', headers: auth });
  expect(replay.status).toBe(202);
  const stored = await statusOf(wamid, 'stored');
  const res = await fetch(`${app.url}/v1/media/${stored.messageId}`, { headers: auth });
  expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
}, 60_000);
