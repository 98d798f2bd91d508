// Sending by OUR stored media id (an upload's `mediaId`, a received message's `media.mediaId`):
// what reaches Meta is a media id of the sending number holding exactly our bytes, uploaded once
// per number and reused; Meta's own ids go out as they are.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, testEnv, type TestDb } from '../helpers/context.js';
import { eventually, json, startApp, type RunningApp } from '../helpers/app.js';
import { bytesOf, mediaOf, receiveMedia } from '../helpers/media.js';

const SECOND_NUMBER = '106540352243111';
let db: TestDb;
let sim: GraphSimulator;
let app: RunningApp;
const auth = { authorization: `Bearer ${API_TOKEN}` };

const upload = (bytes: Buffer, mime: string, filename: string) => {
  const form = new FormData();
  form.append('file', new Blob([bytes], { type: mime }), filename);
  return fetch(`${app.url}/v1/media`, { method: 'POST', headers: auth, body: form });
};
/** From the first number unless the body names a channel (a second one joins on the way). */
const send = (body: Record<string, unknown>) =>
  fetch(`${app.url}/v1/messages`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(body.channelId ? body : { phoneNumberId: PHONE_NUMBER_ID, ...body }) });
const atMeta = (to: string) => eventually(async () => sim.sent.find((s) => s.to === to), { what: `send to ${to} reached the simulator` });
const uploadsOf = (bytes: Buffer, by: string) => [...sim.media.items.values()].filter((i) => i.uploadedBy === by && i.bytes.equals(bytes));

beforeAll(async () => {
  [db, sim] = await Promise.all([
    createTestDb(),
    startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token', [SECOND_NUMBER]: 'second-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 1 } }),
  ]);
  app = await startApp(db, 'all', testEnv(db, { GRAPH_API_BASE_URL: sim.url, MEDIA_BACKOFF_MS: '100', MEDIA_POLL_MS: '50' }));
});
afterAll(async () => {
  await app?.stop();
  await sim?.close();
  await db?.drop();
});

describe('a send by our stored media id', () => {
  it("sends an upload by our id with Meta's id of that upload, uploading nothing again", async () => {
    const bytes = bytesOf(10_000);
    const up = await json(await upload(bytes, 'image/png', 'ours.png'));
    const to = '5511955550001';
    expect((await send({ to, type: 'image', image: { id: String(up.mediaId), caption: 'again' } })).status).toBe(202);
    expect((await atMeta(to)).body.image).toEqual({ id: up.id, caption: 'again' });
    expect(uploadsOf(bytes, PHONE_NUMBER_ID)).toHaveLength(1);
  });

  it("sends a received message's media with a Meta id of the sending number holding the same bytes, uploaded once per number", async () => {
    const bytes = bytesOf(60_000);
    const { wamid, item } = await receiveMedia(app.url, sim, 'document', bytes, 'application/pdf');
    const { messageId } = await eventually(async () => {
      const m = await mediaOf(db, wamid);
      return m?.status === 'stored' ? m : null;
    }, { what: 'media stored', timeoutMs: 30_000 });
    const view = await json(await fetch(`${app.url}/v1/messages/${messageId}`, { headers: auth }));
    expect(view.media.mediaId).toEqual(expect.any(Number));
    const ours = String(view.media.mediaId);

    expect((await send({ to: '5511955550002', type: 'document', document: { id: ours, filename: 'contract.pdf' } })).status).toBe(202);
    const first = await atMeta('5511955550002');
    const firstId = (first.body.document as { id: string }).id;
    expect(firstId).not.toBe(ours);
    expect(firstId).not.toBe(item.id);
    expect(sim.media.items.get(firstId)?.uploadedBy).toBe(PHONE_NUMBER_ID);
    expect(sim.media.items.get(firstId)?.bytes.equals(bytes)).toBe(true);
    expect(first.body.document).toEqual({ id: firstId, filename: 'contract.pdf' });

    // Again from the same number: the upload is reused.
    expect((await send({ to: '5511955550003', type: 'document', document: { id: ours } })).status).toBe(202);
    expect(((await atMeta('5511955550003')).body.document as { id: string }).id).toBe(firstId);
    expect(uploadsOf(bytes, PHONE_NUMBER_ID)).toHaveLength(1);

    // From another number: Meta's ids are per number, so that number uploads its own.
    const created = await fetch(`${app.url}/v1/channels`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ phoneNumberId: SECOND_NUMBER, accessToken: 'second-access-token' }) });
    expect(created.status).toBe(201);
    const channelId = (await json(created)).id as number;
    expect((await send({ channelId, to: '5511955550004', type: 'document', document: { id: ours } })).status).toBe(202);
    const other = await atMeta('5511955550004');
    expect(other.phoneNumberId).toBe(SECOND_NUMBER);
    const otherId = (other.body.document as { id: string }).id;
    expect(sim.media.items.get(otherId)?.uploadedBy).toBe(SECOND_NUMBER);
    expect(uploadsOf(bytes, SECOND_NUMBER)).toHaveLength(1);
  });

  it("sends Meta's own ids as they are", async () => {
    const to = '5511955550005';
    expect((await send({ to, type: 'video', video: { id: '1166846181421424' } })).status).toBe(202);
    expect((await atMeta(to)).body.video).toEqual({ id: '1166846181421424' });
  });

  it('refuses media of ours that is not stored', async () => {
    const { wamid } = await receiveMedia(app.url, sim, 'image', bytesOf(1_000), 'image/gif');
    const failed = await eventually(async () => (await db.pool.query<{ id: string }>("SELECT d.id::text FROM media d JOIN messages m ON m.media_id = d.meta_id WHERE m.wamid = $1 AND d.status = 'failed'", [wamid])).rows[0], { what: 'media failed', timeoutMs: 30_000 });
    const res = await send({ to: '5511955550006', type: 'image', image: { id: failed.id } });
    expect(res.status).toBe(409);
    expect((await json(res)).error.code).toBe('media_failed');
    expect(sim.sent.find((s) => s.to === '5511955550006')).toBeUndefined();
  });
});
