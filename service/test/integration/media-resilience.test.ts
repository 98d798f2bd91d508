// A media download outlives its worker: SIGKILLed mid-download, the next worker stores the file
// once, in either store: it sweeps the killed one's temp file (in S3 the store refuses the cut
// PutObject, whose SHA-256 checksum it cannot match, and keeps nothing of it), and a second media
// of the same bytes cut mid-upload leaves the first one's stored object whole (the store's outage
// is in media-s3.test.ts).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, testEnv, type TestDb } from '../helpers/context.js';
import { eventually, startApp, type RunningApp } from '../helpers/app.js';
import { spawnService, type ServiceProcess } from '../helpers/process.js';
import { bytesOf, mediaOf, receiveItem, receiveMedia, startTestS3 } from '../helpers/media.js';
import type { S3Handle } from '../../../scripts/stack/versitygw.js';

let db: TestDb;
let sim: GraphSimulator;
let web: RunningApp;
let env: Record<string, string>;
let s3: S3Handle | undefined;
const workers: ServiceProcess[] = [];
const auth = { authorization: `Bearer ${API_TOKEN}` };

const storedBytes = async (wamid: string, timeoutMs: number, from = web) => {
  const m = await eventually(async () => {
    const r = await mediaOf(db, wamid);
    return r?.status === 'stored' ? r : null;
  }, { what: 'media stored', timeoutMs });
  return Buffer.from(await (await fetch(`${from.url}/v1/media/${m.messageId}`, { headers: auth })).arrayBuffer());
};

/** Starts a worker, lets it download 8 MB at 2 MB/s and SIGKILLs it mid-stream; a second worker then runs at full speed. */
async function killMidDownload(workerEnv: Record<string, string>, appUrl: string) {
  sim.configure({ mediaBytesPerSecond: 2 * 1024 * 1024 });
  const first = spawnService('worker', workerEnv);
  workers.push(first);
  const bytes = bytesOf(8 * 1024 * 1024);
  const { wamid, item } = await receiveMedia(appUrl, sim, 'document', bytes, 'application/pdf');
  await eventually(async () => item.served > 1024 * 1024, { what: 'download under way', timeoutMs: 60_000 });
  await first.kill('SIGKILL');
  expect((await mediaOf(db, wamid))?.status).toBe('pending');
  sim.configure({ mediaBytesPerSecond: 0 });
  workers.push(spawnService('worker', workerEnv));
  return { bytes, wamid, key: `sha256/${item.sha256.slice(0, 2)}/${item.sha256}` };
}

beforeAll(async () => {
  [db, sim] = await Promise.all([
    createTestDb(),
    startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 1 } }),
  ]);
  env = testEnv(db, { GRAPH_API_BASE_URL: sim.url, MEDIA_POLL_MS: '50', MEDIA_BACKOFF_MS: '1000', MEDIA_ATTEMPTS: '12', WORKER_LOCK_MS: '2000', MEDIA_TIMEOUT_MS: '3000' });
  web = await startApp(db, 'web', env);
});
afterAll(async () => {
  for (const w of workers) await w.kill();
  await s3?.stop();
  await web?.stop();
  await sim?.close();
  await db?.drop();
});

describe('media downloads under a crash', () => {
  it('stores a download exactly once after its worker is SIGKILLed mid-download', async () => {
    const { bytes, wamid, key } = await killMidDownload(env, web.url);
    expect((await storedBytes(wamid, 60_000)).equals(bytes)).toBe(true);
    expect((await mediaOf(db, wamid))?.storageKey).toBe(key);
    // Once: the store holds that one object; the killed worker's temp file is swept once it is
    // older than a download's idle timeout.
    const files = () => fs.readdirSync(env.MEDIA_FS_DIR!, { recursive: true, withFileTypes: true }).filter((f) => f.isFile()).map((f) => `${f.parentPath.slice(env.MEDIA_FS_DIR!.length + 1)}/${f.name}`);
    await eventually(async () => files().length === 1, { timeoutMs: 20_000 }).catch(() => undefined);
    expect(files()).toEqual([key]);
    // This file's workers are done with the folder store; the next test's take the bucket.
    for (const w of workers.splice(0)) await w.kill();
  }, 180_000);

  it('stores a download exactly once in S3 after its worker is SIGKILLed mid-PutObject', async () => {
    s3 = await startTestS3();
    const s3Env = { ...env, ...s3.env, MEDIA_S3_REDIRECT: 'false' };
    const s3Web = await startApp(db, 'web', s3Env);
    const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
    try {
      const { bytes, wamid, key } = await killMidDownload(s3Env, s3Web.url);
      expect((await storedBytes(wamid, 60_000, s3Web)).equals(bytes)).toBe(true);
      expect((await mediaOf(db, wamid))?.storageKey).toBe(key);
      // One object, the whole file: not the part a store may keep of the upload the kill cut short
      // (refused by its checksum; objects a version before it left under .partial/ are swept), nor a second copy.
      await eventually(async () => {
        const listed = await client.send(new ListObjectsV2Command({ Bucket: s3!.bucket }));
        const objs = (listed.Contents ?? []).map((o) => [o.Key, o.Size]);
        return objs.length === 1 ? objs : null;
      }, { what: 'one object in the bucket', timeoutMs: 20_000 });
      const listed = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket }));
      expect((listed.Contents ?? []).map((o) => [o.Key, o.Size])).toEqual([[key, bytes.length]]);
      const head = await client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }));
      expect(head.ETag).toBe(`"${createHash('md5').update(bytes).digest('hex')}"`);
    } finally {
      client.destroy();
      await s3Web.stop();
    }
  }, 240_000);

  it("keeps the first media's stored object whole in S3 when a second media of the same bytes is cut mid-upload and then fails", async () => {
    // Two media of the same bytes (one sticker from two customers) share a content-addressed key.
    for (const w of workers.splice(0)) await w.kill();
    s3 ??= await startTestS3();
    const s3Env = { ...env, ...s3.env, MEDIA_S3_REDIRECT: 'false' };
    const s3Web = await startApp(db, 'web', s3Env);
    try {
      sim.configure({ mediaBytesPerSecond: 2 * 1024 * 1024 });
      const first = spawnService('worker', s3Env);
      workers.push(first);
      const bytes = bytesOf(8 * 1024 * 1024);
      const a = await receiveItem(s3Web.url, 'document', sim.media.add(bytes, 'application/pdf'), '5511977770001');
      await eventually(async () => a.item.served > 1024 * 1024, { what: 'A under way', timeoutMs: 60_000 });
      const b = await receiveItem(s3Web.url, 'document', sim.media.add(bytes, 'application/pdf'), '5511977770002');
      await eventually(async () => (await mediaOf(db, a.wamid))?.status === 'stored', { what: 'A stored', timeoutMs: 60_000 });
      expect(b.item.served, 'B mid-download when A is stored').toBeGreaterThan(0);
      expect(b.item.served).toBeLessThan(bytes.length);
      await first.kill('SIGKILL');
      const { messageId } = (await mediaOf(db, a.wamid))!;
      const served = async () => Buffer.from(await (await fetch(`${s3Web.url}/v1/media/${messageId}`, { headers: auth })).arrayBuffer());
      const right = await served();
      // Meta no longer has B's media: its next try fails for good, nothing writes the key again.
      b.item.expired = true;
      sim.configure({ mediaBytesPerSecond: 0 });
      workers.push(spawnService('worker', s3Env));
      await eventually(async () => (await mediaOf(db, b.wamid))?.status === 'failed', { what: 'B failed', timeoutMs: 60_000 });
      const later = await served();
      expect({ right: right.length, later: later.length }, 'bytes of A served, right after the kill and once B failed').toEqual({ right: bytes.length, later: bytes.length });
      expect(later.equals(bytes)).toBe(true);
    } finally {
      await s3Web.stop();
    }
  }, 240_000);
});
