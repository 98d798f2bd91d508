// Review proof (rev-media11): a put WITHOUT a sha256 (the download path when Meta declares no
// SHA-256: key `media/<row id>`) goes straight to its key with no checksum, so a second upload of
// that key cut mid-body replaces the whole stored object with the part the store kept (Versity S3
// Gateway keeps it). The key is not "named by nothing": once stored, the row's key is what
// storedKeysOf() hands every later media of the same bytes (dedup), and a stalled job's first run
// can still be uploading to it after the second run stored it. On main (temp key + copy) this passes.
import { Readable } from 'node:stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { S3Handle } from '../../../scripts/stack/versitygw.js';
import { S3MediaStore } from '../../src/media/s3-store.js';
import { bytesOf, startTestS3 } from '../helpers/media.js';

let s3: S3Handle;
beforeAll(async () => {
  s3 = await startTestS3();
}, 300_000);
afterAll(async () => {
  await s3?.stop();
});

it('keeps a stored object whole at a key of its own (no declared sha256) when a second upload of that key is cut mid-body', async () => {
  const store = new S3MediaStore({ bucket: s3.bucket, region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey });
  const cutAfter = (bytes: Buffer, sent: number) => {
    const cut = new Readable({ read() {} });
    cut.push(bytes.subarray(0, sent));
    setTimeout(() => cut.destroy(new Error('source gone')), 300);
    return cut;
  };
  try {
    const bytes = bytesOf(2 * 1024 * 1024);
    const key = 'media/42';
    // The second run of a stalled job stored it (sized: Meta declared file_size, no sha256) ...
    await store.put(key, Readable.from([bytes]), 'image/webp', bytes.length);
    // ... then the first run, still going, has its upload cut (Meta's stream dropped).
    await expect(store.put(key, cutAfter(bytes, 1024 * 1024), 'image/webp', bytes.length)).rejects.toThrow('source gone');
    await new Promise((r) => setTimeout(r, 500));
    expect(await store.size(key), 'size of the object the stored row (and every deduplicated media) is served from').toBe(bytes.length);
  } finally {
    await store.close();
  }
}, 120_000);

it('keeps a stored object whole when a second upload of its content key, of unknown size and over one part (multipart), is cut mid-body', async () => {
  const { createHash } = await import('node:crypto');
  const { keyForSha256 } = await import('../../src/media/store.js');
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
