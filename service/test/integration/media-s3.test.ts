// Media with a real S3-compatible store (Versity S3 Gateway, built from the Go module proxy and
// started on loopback): every media type stored and served byte for byte, ranges, a presigned
// redirect that expires, bytes that fail their check mid-upload, bytes of no declared size (a
// multipart upload), an upload cut short or altered beside a stored object of the same key (with
// a declared SHA-256, without one, multipart), the requests a new object costs (one; three
// without a declared SHA-256), and the store down for 30 s (downloads retry and land when it is
// back).
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import type { S3Handle } from '../../../scripts/stack/versitygw.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { eventually, startApp, type RunningApp } from '../helpers/app.js';
import { keyForSha256 } from '../../src/media/store.js';
import { S3MediaStore, TMP_PREFIX } from '../../src/media/s3-store.js';
import { bytesOf, countingProxy, mediaOf, receiveItem, receiveMedia, startTestS3, type CountingProxy, type Kind } from '../helpers/media.js';

let db: TestDb;
let sim: GraphSimulator;
let s3: S3Handle;
let starting: Promise<PromiseSettledResult<unknown>[]> | undefined;
let app: RunningApp;
/** What the app asks the store, counted on the way. */
let proxy: CountingProxy;
/** The store seen directly, as S3 describes what it holds. */
let objects: S3Client;
const auth = { authorization: `Bearer ${API_TOKEN}` };

const stored = (wamid: string, timeoutMs = 30_000) => eventually(async () => {
  const m = await mediaOf(db, wamid);
  return m?.status === 'stored' ? m : null;
}, { what: `media of ${wamid} stored`, timeoutMs });

/** The ETag S3 gives an object one PutObject or CopyObject stored: the MD5 of its bytes. */
const etagOf = (bytes: Buffer) => `"${createHash('md5').update(bytes).digest('hex')}"`;
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
  proxy = await countingProxy(s3.endpoint);
  // Streamed through this service (ranges are ours to answer); the redirect has its own test.
  app = await startApp(db, 'all', { ...s3.env, S3_ENDPOINT: proxy.endpoint, GRAPH_API_BASE_URL: sim.url, MEDIA_S3_REDIRECT: 'false', MEDIA_POLL_MS: '50', MEDIA_BACKOFF_MS: '1000', MEDIA_ATTEMPTS: '12' });
  objects = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
}, 300_000);
afterAll(async () => {
  await starting;
  objects?.destroy();
  await app?.stop();
  await proxy?.close();
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
      expect(await storedEtag(m.storageKey), `${kind} stored whole`).toBe(etagOf(bytes));
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
    // Uploaded in parts of 5 MiB straight to its key (nothing is there until the upload completes):
    // the ETag of a multipart object is the MD5 of its parts' MD5s, followed by their count.
    const parts = [bytes.subarray(0, 5 * 1024 * 1024), bytes.subarray(5 * 1024 * 1024)];
    const multipartEtag = `"${createHash('md5').update(Buffer.concat(parts.map((p) => createHash('md5').update(p).digest()))).digest('hex')}-2"`;
    expect(await storedEtag(m.storageKey), 'ETag of the stored object').toBe(multipartEtag);
  }, 60_000);

  it('keeps a stored object whole when a second upload of its key is cut mid-body or altered on the way, and leaves nothing at a new key an upload was cut short of', async () => {
    // Keys are content addresses shared by every media of the same bytes, and Versity S3 Gateway
    // keeps the bytes of a PutObject cut short: what guards the key is the SHA-256 each upload
    // carries, which the store checks before it makes the upload the object.
    const store = new S3MediaStore({ bucket: s3.bucket, region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey });
    const readAll = async (r: Readable) => {
      const chunks: Buffer[] = [];
      for await (const c of r) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    };
    const cutAfter = (bytes: Buffer, sent: number) => {
      const cut = new Readable({ read() {} });
      cut.push(bytes.subarray(0, sent));
      setTimeout(() => cut.destroy(new Error('source gone')), 300);
      return cut;
    };
    const shaOf = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    try {
      const bytes = bytesOf(2 * 1024 * 1024);
      const key = keyForSha256(shaOf(bytes));
      await store.put(key, Readable.from([bytes]), 'image/webp', bytes.length, shaOf(bytes));
      await expect(store.put(key, cutAfter(bytes, 1024 * 1024), 'image/webp', bytes.length, shaOf(bytes))).rejects.toThrow('source gone');
      await new Promise((r) => setTimeout(r, 500));
      expect(await store.size(key), 'size of the object the first media is served from').toBe(bytes.length);
      expect((await readAll((await store.get(key)).body)).equals(bytes)).toBe(true);
      // The same length, one byte changed on the way: refused by the store, the object untouched.
      const altered = Buffer.from(bytes);
      altered[12_345]! ^= 0xff;
      await expect(store.put(key, Readable.from([altered]), 'image/webp', altered.length, shaOf(bytes))).rejects.toMatchObject({ name: 'BadDigest' });
      expect(await storedEtag(key), 'the object after an altered upload').toBe(etagOf(bytes));
      // A first upload cut short leaves nothing at its key.
      const other = bytesOf(1024 * 1024);
      const otherKey = keyForSha256(shaOf(other));
      await expect(store.put(otherKey, cutAfter(other, 512 * 1024), 'image/webp', other.length, shaOf(other))).rejects.toThrow('source gone');
      await new Promise((r) => setTimeout(r, 500));
      expect(await store.size(otherKey)).toBeNull();
      // What the checksum guards against: written straight to its key without it (only an API
      // upload's random key is, which its caller deletes), the store keeps the cut upload's bytes.
      await expect(store.put('uploads/cut-without-checksum', cutAfter(other, 512 * 1024), 'image/webp', other.length, null, { unique: true })).rejects.toThrow('source gone');
      // The store saves what it got once it sees the connection end: on a loaded host that can take
      // longer than the 500 ms the checked cases wait, so this waits for it (up to 15 s).
      await eventually(async () => (await store.size('uploads/cut-without-checksum')) === 512 * 1024, { what: 'the bytes the store kept of an unchecked cut upload (512 KiB)' });
    } finally {
      await store.close();
    }
  }, 60_000);

  it('keeps a stored object whole at a key without a declared SHA-256 (media/<row id>, shared once stored) when a second upload of it is cut mid-body, and leaves only temp objects the sweep removes', async () => {
    // Review of 2026-12-01 (rev-media11): such a key is written by every run of its job (a stalled
    // job's first run may still be uploading after the second stored it), and once stored it is
    // the key later media of the same bytes are deduplicated onto (the next test).
    const store = new S3MediaStore({ bucket: s3.bucket, region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey });
    const cutAfter = (bytes: Buffer, sent: number) => {
      const cut = new Readable({ read() {} });
      cut.push(bytes.subarray(0, sent));
      setTimeout(() => cut.destroy(new Error('source gone')), 300);
      return cut;
    };
    try {
      const bytes = bytesOf(2 * 1024 * 1024);
      const key = 'media/cut-of-own-key';
      // The second run of a stalled job stored it (Meta declared file_size, no sha256) ...
      await store.put(key, Readable.from([bytes]), 'image/webp', bytes.length);
      // ... then the first run, still going, has its upload cut (Meta's stream dropped): sized, and unsized (one PutObject).
      await expect(store.put(key, cutAfter(bytes, 1024 * 1024), 'image/webp', bytes.length)).rejects.toThrow('source gone');
      await expect(store.put(key, cutAfter(bytes, 1024 * 1024), 'image/webp')).rejects.toThrow('source gone');
      await new Promise((r) => setTimeout(r, 500));
      expect(await store.size(key), 'size of the object the stored row (and every deduplicated media) is served from').toBe(bytes.length);
      expect(await storedEtag(key), 'the object after cut uploads of its key').toBe(etagOf(bytes));
      // The temp key is deleted once the upload failed, but the store may still commit the cut
      // bytes after it answered (Versity S3 Gateway did here, after the delete): the sweep's.
      await store.removeStale(0);
      const temps = await objects.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: TMP_PREFIX }));
      expect(temps.Contents ?? [], 'temp objects left after the sweep').toEqual([]);
    } finally {
      await store.close();
    }
  }, 60_000);

  it('keeps a stored object whole when a second upload of its content key, of unknown size and over one part (multipart), is cut mid-body', async () => {
    // Review of 2026-12-01 (rev-media11): a multipart upload goes straight to the key without a
    // checksum; it must never complete on a body that failed.
    const store = new S3MediaStore({ bucket: s3.bucket, region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey });
    try {
      const bytes = bytesOf(11 * 1024 * 1024);
      const sha = createHash('sha256').update(bytes).digest('hex');
      const key = keyForSha256(sha);
      await store.put(key, Readable.from([bytes]), 'video/mp4', null, sha);
      expect(await store.size(key)).toBe(bytes.length);
      // 7 MiB then the source dies: past the first part, so a multipart upload to the key.
      const cut = new Readable({ read() {} });
      cut.push(bytes.subarray(0, 7 * 1024 * 1024));
      setTimeout(() => cut.destroy(new Error('source gone')), 300);
      await expect(store.put(key, cut, 'video/mp4', null, sha)).rejects.toThrow('source gone');
      await new Promise((r) => setTimeout(r, 500));
      expect(await store.size(key), 'the stored object after a cut multipart upload of its key').toBe(bytes.length);
    } finally {
      await store.close();
    }
  }, 120_000);

  it('stores media without a declared SHA-256 at media/<id> through a temp key and a copy, and deduplicates later media of the same bytes onto that key', async () => {
    const bytes = bytesOf(60_000);
    const first = sim.media.add(bytes, 'image/jpeg');
    first.sha256 = ''; // Meta's metadata carries no sha256 for this one
    proxy.requests.length = 0;
    const a = await stored((await receiveItem(app.url, 'image', first)).wamid);
    await new Promise((r) => setTimeout(r, 300));
    expect(a.storageKey).toBe(`media/${a.id}`);
    const seen = proxy.requests.filter((r) => !r.endsWith(`/${s3.bucket}`) && !r.endsWith(`/${s3.bucket}/`)).map((r) => r.replace(/\.partial\/[0-9a-f]+$/, '.partial/<tmp>'));
    const tmp = `/${s3.bucket}/${TMP_PREFIX}<tmp>`;
    // The upload, the copy (a PUT with x-amz-copy-source), the temp key's delete.
    expect(seen, 'requests to the store for a new image without a declared SHA-256').toEqual([`PUT ${tmp}`, `PUT /${s3.bucket}/${a.storageKey}`, `DELETE ${tmp}`]);
    expect(await storedEtag(a.storageKey), 'stored whole').toBe(etagOf(bytes));
    // The same bytes with a SHA-256 declared: served from that key (so it must never be cut).
    const b = await stored((await receiveMedia(app.url, sim, 'image', bytes, 'image/jpeg')).wamid);
    expect(b.id).not.toBe(a.id);
    expect(b.storageKey).toBe(`media/${a.id}`);
  }, 60_000);

  it('stores a new image with one request to the store, and a second media of the same bytes with one HEAD and no upload', async () => {
    const bytes = bytesOf(100_000);
    proxy.requests.length = 0;
    const a = await stored((await receiveMedia(app.url, sim, 'image', bytes, 'image/jpeg')).wamid);
    const key = `/${s3.bucket}/${a.storageKey}`;
    // Anything a write might still send after the row is stored would show here.
    await new Promise((r) => setTimeout(r, 300));
    expect(proxy.requests.filter((r) => !r.endsWith(`/${s3.bucket}`) && !r.endsWith(`/${s3.bucket}/`)), 'requests to the store for a new image').toEqual([`PUT ${key}`]);
    expect(await storedEtag(a.storageKey), 'stored whole').toBe(etagOf(bytes));
    proxy.requests.length = 0;
    const b = await stored((await receiveMedia(app.url, sim, 'image', bytes, 'image/jpeg')).wamid);
    await new Promise((r) => setTimeout(r, 300));
    expect(b.storageKey).toBe(a.storageKey);
    expect(proxy.requests.filter((r) => !r.endsWith(`/${s3.bucket}`) && !r.endsWith(`/${s3.bucket}/`)), 'requests to the store for the same bytes again').toEqual([`HEAD ${key}`]);
  }, 60_000);

  it('downloads again, not deduplicated, when the object under a SHA-256 is not the size its download counted (Meta declaring none)', async () => {
    const bytes = bytesOf(200_000);
    const first = sim.media.add(bytes, 'image/jpeg');
    (first as { fileSize?: number }).fileSize = undefined;
    const a = await stored((await receiveItem(app.url, 'image', first)).wamid);
    // The object went short behind our back (a store's fault, an older write): the row says 200,000.
    await objects.send(new PutObjectCommand({ Bucket: s3.bucket, Key: a.storageKey!, Body: bytes.subarray(0, 1000) }));
    const second = sim.media.add(bytes, 'image/jpeg');
    (second as { fileSize?: number }).fileSize = undefined;
    const b = await stored((await receiveItem(app.url, 'image', second)).wamid);
    expect(second.served, 'bytes of the second media downloaded').toBe(bytes.length);
    expect(b.storageKey).toBe(a.storageKey);
    const res = await fetch(`${app.url}/v1/media/${b.messageId}`, { headers: auth });
    expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
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
