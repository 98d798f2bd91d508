// Media with a real S3-compatible store (Versity S3 Gateway, built from the Go module proxy and
// started on loopback): every media type stored and served byte for byte, ranges, a presigned
// redirect that expires, bytes that fail their check mid-upload, bytes of no declared size (a
// multipart upload), and the store down for 30 s (downloads retry and land when it is back).
import { createHash } from 'node:crypto';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import type { S3Handle } from '../../../scripts/stack/versitygw.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { eventually, startApp, type RunningApp } from '../helpers/app.js';
import { keyForSha256 } from '../../src/media/store.js';
import { bytesOf, mediaOf, receiveItem, receiveMedia, startTestS3, type Kind } from '../helpers/media.js';

let db: TestDb;
let sim: GraphSimulator;
let s3: S3Handle;
let starting: Promise<PromiseSettledResult<unknown>[]> | undefined;
let app: RunningApp;
/** The store seen directly, as S3 describes what it holds. */
let objects: S3Client;
const auth = { authorization: `Bearer ${API_TOKEN}` };

const stored = (wamid: string, timeoutMs = 30_000) => eventually(async () => {
  const m = await mediaOf(db, wamid);
  return m?.status === 'stored' ? m : null;
}, { what: `media of ${wamid} stored`, timeoutMs });

const md5 = (b: Buffer) => createHash('md5').update(b).digest();
/**
 * The ETag S3 gives an object: the MD5 of its bytes when one PutObject stored it; when a multipart
 * upload did, the MD5 of its parts' MD5s and `-<parts>` (AWS S3 and Versity S3 Gateway alike).
 */
const etagOf = (bytes: Buffer, partBytes?: number) => {
  if (!partBytes) return `"${md5(bytes).toString('hex')}"`;
  const parts: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += partBytes) parts.push(md5(bytes.subarray(at, at + partBytes)));
  return `"${md5(Buffer.concat(parts)).toString('hex')}-${parts.length}"`;
};
const storedEtag = async (key: string | null) => (await objects.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key! }))).ETag;

beforeAll(async () => {
  // Each handle kept as it comes, and afterAll waits for every start: when one fails (or this hook
  // times out), what the others started is still stopped.
  starting = Promise.allSettled([
    createTestDb().then((d) => (db = d)),
    startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 1 } }).then((g) => (sim = g)),
    startTestS3().then((h) => (s3 = h)),
  ]);
  for (const r of await starting) if (r.status === 'rejected') throw r.reason;
  // Streamed through this service (ranges are ours to answer); the redirect has its own test.
  app = await startApp(db, 'all', { ...s3.env, GRAPH_API_BASE_URL: sim.url, MEDIA_S3_REDIRECT: 'false', MEDIA_POLL_MS: '50', MEDIA_BACKOFF_MS: '1000', MEDIA_ATTEMPTS: '12' });
  objects = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
}, 300_000);
afterAll(async () => {
  await starting;
  objects?.destroy();
  await app?.stop();
  await sim?.close();
  await s3?.stop();
  await db?.drop();
});

describe('media in an S3-compatible store', () => {
  it('stores each media type byte for byte through one PutObject (a video over one multipart part too) and serves ranges', async () => {
    const cases: [Kind, string, number][] = [['image', 'image/jpeg', 150_000], ['audio', 'audio/ogg; codecs=opus', 40_000], ['video', 'video/mp4', 7_000_000], ['document', 'application/pdf', 700_000], ['sticker', 'image/webp', 30_000]];
    for (const [kind, mime, size] of cases) {
      const bytes = bytesOf(size);
      const { wamid } = await receiveMedia(app.url, sim, kind, bytes, mime);
      const m = await stored(wamid);
      // Meta declared the size: one PutObject streamed it, however large.
      expect(await storedEtag(m.storageKey), `${kind} stored by one PutObject`).toBe(etagOf(bytes));
      const res = await fetch(`${app.url}/v1/media/${m.messageId}`, { headers: auth });
      expect(res.status, kind).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes), `${kind} bytes`).toBe(true);
      const part = await fetch(`${app.url}/v1/media/${m.messageId}`, { headers: { ...auth, range: 'bytes=100-199' } });
      expect(part.status).toBe(206);
      expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(100, 200))).toBe(true);
    }
  }, 120_000);

  it('redirects to a presigned URL of the store that expires', async () => {
    const bytes = bytesOf(5_000);
    const { wamid } = await receiveMedia(app.url, sim, 'image', bytes, 'image/jpeg');
    const { messageId } = await stored(wamid);
    // The signature's time (X-Amz-Date) is rounded down to the second: a TTL of 3 s leaves 2-3 s to
    // fetch it at once, and is over 4.1 s later.
    const web = await startApp(db, 'web', { ...s3.env, MEDIA_URL_TTL_SECONDS: '3' });
    try {
      const res = await fetch(`${web.url}/v1/media/${messageId}`, { headers: auth, redirect: 'manual' });
      expect(res.status).toBe(302);
      const location = res.headers.get('location')!;
      expect(location.startsWith(s3.endpoint)).toBe(true);
      const now = await fetch(location);
      expect(now.status).toBe(200);
      expect(Buffer.from(await now.arrayBuffer()).equals(bytes)).toBe(true);
      await new Promise((r) => setTimeout(r, 4_100));
      expect((await fetch(location)).status).toBe(403);
    } finally {
      await web.stop();
    }
  });

  it('ends the upload of bytes that fail their SHA-256 at once, leaving no object of the declared size', async () => {
    // The check fails at the last byte, which is held back: the store has all but that byte and
    // would wait for it (a download timeout of 30 s) unless the failure ends the upload.
    const item = sim.media.add(bytesOf(300_000), 'image/jpeg');
    item.sha256 = 'a'.repeat(64);
    const { wamid } = await receiveItem(app.url, 'image', item);
    const m = await eventually(async () => {
      const row = await mediaOf(db, wamid);
      return row?.status === 'failed' ? row : null;
    }, { what: `media of ${wamid} failed`, timeoutMs: 15_000 });
    expect(m.errorCode).toBe('sha256_mismatch');
    expect(item.served).toBe(300_000);
    // AWS S3 never keeps a PutObject whose body ended short of its Content-Length; Versity S3
    // Gateway (v1.8.0) keeps the bytes it got. Either way no object of the declared size may be
    // there: the dedupe trusts an object under a SHA-256 only at the size Meta declared.
    const size = await objects.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: keyForSha256(item.sha256) })).then((h) => h.ContentLength ?? 0, (err: { $metadata?: { httpStatusCode?: number } }) => {
      expect(err.$metadata?.httpStatusCode).toBe(404);
      return 0;
    });
    expect(size, 'bytes under the declared SHA-256').toBeLessThan(300_000);
  });

  it('stores bytes whose size Meta does not declare through a multipart upload', async () => {
    const bytes = bytesOf(7_000_000);
    const item = sim.media.add(bytes, 'video/mp4');
    (item as { fileSize?: number }).fileSize = undefined;
    const { wamid } = await receiveItem(app.url, 'video', item);
    const m = await stored(wamid);
    const res = await fetch(`${app.url}/v1/media/${m.messageId}`, { headers: auth });
    expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
    // A part of 5 MiB (S3's smallest, what the store uploads) and one of the rest: the object was
    // put together from them, not taken in one PutObject of bytes held whole.
    expect(await storedEtag(m.storageKey), 'ETag of the stored object').toBe(etagOf(bytes, 5 * 1024 * 1024));
  }, 60_000);

  it('stores media that arrived while the store was down for 30 s once it is back', async () => {
    await s3.stop();
    const bytes = bytesOf(200_000);
    const { wamid } = await receiveMedia(app.url, sim, 'image', bytes, 'image/jpeg');
    await new Promise((r) => setTimeout(r, 30_000));
    expect((await mediaOf(db, wamid))?.status).toBe('pending');
    await s3.start();
    const m = await stored(wamid, 90_000);
    expect(Buffer.from(await (await fetch(`${app.url}/v1/media/${m.messageId}`, { headers: auth })).arrayBuffer()).equals(bytes)).toBe(true);
  }, 240_000);
});
