// Media of one webhook download as one batch: a download that fails for a transient reason is
// tried again alone, and a batch out of attempts leaves a dead letter of the failed media only,
// which a replay stores.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, testEnv, type TestDb } from '../helpers/context.js';
import { eventually, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { bytesOf, mediaOf } from '../helpers/media.js';
import { imageMessage, inboundEnvelope } from '../fixtures/payloads.js';

let db: TestDb;
let sim: GraphSimulator;
let app: RunningApp;
const auth = { authorization: `Bearer ${API_TOKEN}` };

beforeAll(async () => {
  [db, sim] = await Promise.all([
    createTestDb(),
    startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 1 } }),
  ]);
  // One attempt: a transient failure is at once a dead letter.
  app = await startApp(db, 'all', testEnv(db, { GRAPH_API_BASE_URL: sim.url, MEDIA_POLL_MS: '50', MEDIA_ATTEMPTS: '1' }));
});
afterAll(async () => {
  await app?.stop();
  await sim?.close();
  await db?.drop();
});

describe('media downloaded in batches', () => {
  it('leave a dead letter of the failed download only, and its replay stores it', async () => {
    const items = Array.from({ length: 3 }, (_, i) => sim.media.add(bytesOf(20_000 + i), 'image/jpeg'));
    const messages = items.map((item, i) => imageMessage({ from: `5511933330${i}`, mediaId: item.id, mimeType: item.mime, sha256: item.sha256 }));
    // Meta answers 500 to the first metadata request of the three.
    sim.configure({ mediaMetadataFailures: 1 });
    expect((await postWebhook(app.url, JSON.stringify(inboundEnvelope(messages)))).status).toBe(200);
    const outcomes = await eventually(async () => {
      const all = await Promise.all(messages.map((m) => mediaOf(db, m.id)));
      return all.every((m) => m && m.status !== 'pending') ? all.map((m) => m!) : null;
    }, { what: 'every download ended', timeoutMs: 30_000 });
    expect(outcomes.map((m) => m.status).sort()).toEqual(['failed', 'stored', 'stored']);
    const failed = outcomes.find((m) => m.status === 'failed')!;
    expect(failed.errorCode).toBe('download_failed');

    const list = await (await fetch(`${app.url}/v1/dead-letters?queue=media`, { headers: auth })).json() as { items: { id: string; data: { mediaIds: number[] } }[] };
    expect(list.items).toHaveLength(1);
    const { rows } = await db.pool.query<{ id: number }>('SELECT d.id::int FROM messages m JOIN media d ON d.channel_id = m.channel_id AND d.meta_id = m.media_id WHERE m.id = $1', [failed.messageId]);
    expect(list.items[0]!.data.mediaIds, 'the dead letter names the failed media only').toEqual([rows[0]!.id]);

    expect((await fetch(`${app.url}/v1/dead-letters/${encodeURIComponent(list.items[0]!.id)}/replay`, { method: 'POST', headers: auth })).status).toBe(202);
    await eventually(async () => (await mediaOf(db, messages[outcomes.indexOf(failed)]!.id))?.status === 'stored', { what: 'the replayed download stored', timeoutMs: 30_000 });
    // Each image's bytes were fetched once: the replay did not download the stored ones again.
    expect(items.map((i) => i.served)).toEqual(items.map((i) => i.bytes.length));
  });
});
