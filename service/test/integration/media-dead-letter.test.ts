// Media downloads that fail for good: the dead letter is recorded on the message's media even when
// the worker's write of it was lost (the poller finds the row still pending, its job failed), and
// within seconds when the database refused that write at first; replaying the dead letter
// downloads the media.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { API_TOKEN, testEnv, type TestDb } from '../helpers/context.js';
import { eventually, json, type RunningApp } from '../helpers/app.js';
import { bytesOf, receiveMedia, startMediaStack, type MediaStack } from '../helpers/media.js';

let db: TestDb;
let sim: GraphSimulator;
let app: RunningApp;
let stack: MediaStack | undefined;
const auth = { authorization: `Bearer ${API_TOKEN}` };

const statusOf = (wamid: string, status: string) => stack!.statusOf(wamid, status);

/**
 * The media's dead letter once `/v1/dead-letters` lists it: the row says failed before its job is
 * moved to BullMQ's failed set (the failure is written first), so seeing `failed` is not enough.
 */
const deadLetterOf = (mediaId: number) => eventually(async () => {
  const letters = await json(await fetch(`${app.url}/v1/dead-letters?queue=media`, { headers: auth }));
  return (letters.items as { id: string }[]).find((l) => l.id === `media:m${mediaId}`);
}, { what: `the dead letter of media ${mediaId}` });

beforeAll(async () => {
  stack = await startMediaStack((d, g) => testEnv(d, { GRAPH_API_BASE_URL: g.url, MEDIA_ATTEMPTS: '1', MEDIA_BACKOFF_MS: '100', MEDIA_POLL_MS: '50' }));
  ({ db, sim, app } = stack);
});
afterAll(async () => {
  await stack?.stop();
});

it('records a dead-lettered download as failed even when the worker lost that write, and a replay of the dead letter stores it', async () => {
  // Meta answers 5xx to the one attempt there is.
  sim.configure({ mediaMetadataFailures: 1 });
  const bytes = bytesOf(20_000);
  const { wamid } = await receiveMedia(app.url, sim, 'image', bytes, 'image/png');
  const failed = await statusOf(wamid, 'failed');
  expect(failed.errorCode).toBe('download_failed');
  // The job must be a dead letter before the row is reset: a row reset while the job is still
  // active would be read by the poller as a lost job not failed (nothing to record).
  await deadLetterOf(failed.id);
  // The worker's write of the failure was lost (the database away at that moment): the row is
  // still pending, claimed long ago, and its job is kept failed under the same id.
  await db.pool.query("UPDATE media SET status = 'pending', error_code = NULL, error_reason = NULL, enqueued_at = now() - interval '11 minutes' WHERE id = $1", [failed.id]);
  const again = await statusOf(wamid, 'failed');
  expect(again.errorCode).toBe('download_failed');
  expect(again.errorReason).toContain('131000');

  const letter = await deadLetterOf(failed.id);
  const replay = await fetch(`${app.url}/v1/dead-letters/${letter.id}/replay`, { method: 'POST', headers: auth });
  expect(replay.status).toBe(202);
  const stored = await statusOf(wamid, 'stored');
  const res = await fetch(`${app.url}/v1/media/${stored.messageId}`, { headers: auth });
  expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
}, 60_000);

it('records the failure of a last attempt within seconds when the database refused that write at first, not when the poller comes back 10 minutes later', async () => {
  // Every try of this download fails (Meta answers 5xx), and for a while the database refuses
  // to mark any media failed (as when it is restarting).
  await db.pool.query(`CREATE FUNCTION refuse_failed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.status = 'failed' THEN RAISE EXCEPTION 'the database is starting up' USING ERRCODE = '57P03'; END IF; RETURN NEW; END $$`);
  await db.pool.query('CREATE TRIGGER refuse_failed BEFORE UPDATE ON media FOR EACH ROW EXECUTE FUNCTION refuse_failed()');
  sim.configure({ mediaMetadataFailures: 1_000_000 });
  try {
    const { wamid } = await receiveMedia(app.url, sim, 'image', bytesOf(10_000), 'image/png');
    // The one attempt there is has failed many times over by now (a backoff of 100 ms) ...
    await new Promise((r) => setTimeout(r, 2_000));
    const waiting = await statusOf(wamid, 'pending');
    // ... but not every 100 ms: the wait doubles (100, 200, 400, 800, 1,600 ms), so within 2 s
    // the job ran again at most 5 times (flat, it was 10 or more), each one counted.
    const metric = (await (await fetch(`${app.url}/metrics`)).text()).split('\n').find((l) => l.startsWith('wa_router_media_failure_write_retries_total '));
    const retries = Number(metric?.split(' ')[1]);
    expect(retries, 'runs again while the database refused the failure').toBeGreaterThanOrEqual(2);
    expect(retries, 'runs again while the database refused the failure').toBeLessThanOrEqual(5);
    await db.pool.query('DROP TRIGGER refuse_failed ON media');
    const t0 = Date.now();
    const failed = await statusOf(wamid, 'failed');
    expect(Date.now() - t0, 'ms until the failure was recorded').toBeLessThan(5_000);
    expect(failed.id).toBe(waiting.id);
    expect(failed.errorCode).toBe('download_failed');
    expect(failed.errorReason).toContain('131000');
    // Dead-lettered once recorded, replayable like any other.
    await deadLetterOf(failed.id);
  } finally {
    sim.configure({ mediaMetadataFailures: 0 });
    await db.pool.query('DROP TRIGGER IF EXISTS refuse_failed ON media');
    await db.pool.query('DROP FUNCTION IF EXISTS refuse_failed()');
  }
}, 60_000);
