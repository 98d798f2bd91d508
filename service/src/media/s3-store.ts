// Any S3-compatible store (AWS S3, MinIO, SeaweedFS, R2, ...): uploads streamed straight through
// (one PutObject when the size is known, multipart otherwise) to a temp key and copied into place
// once whole, ranged reads and presigned GETs.
import { randomBytes } from 'node:crypto';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  NotFound,
  NoSuchKey,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { Readable } from 'node:stream';
import { UndiciHttpHandler } from './s3-transport.js';
import type { ByteRange, MediaStore, StoredObject } from './store.js';

export interface S3StoreOptions {
  readonly bucket: string;
  readonly region: string;
  readonly endpoint?: string;
  readonly accessKeyId?: string;
  readonly secretAccessKey?: string;
  readonly forcePathStyle: boolean;
  /**
   * How long the store may take to answer once a request is sent, or to send the next chunk of
   * an object read.
   * @defaultValue 30 s
   */
  readonly timeoutMs?: number;
}

/**
 * S3's smallest multipart part. A multipart upload buffers whole parts (the one being filled and
 * the one in flight, ~2 × PART_BYTES), so it is only for bodies of unknown size; one of known size
 * streams through a PutObject holding no more than the stream's own buffers.
 */
const PART_BYTES = 5 * 1024 * 1024;
/** S3's largest PutObject (and CopyObject). */
const MAX_PUT_BYTES = 5 * 1024 ** 3;
/**
 * Where uploads land before they are copied to their key. Keys are content addresses shared by
 * every media of the same bytes, and some stores keep what a cut-short PutObject sent (versitygw
 * does): an upload straight to the key could replace a stored object with a part of it.
 */
export const TMP_PREFIX = '.partial/';
/** Temp objects looked at per sweep: more wait for the next one. */
const SWEEP_BATCH = 1000;

/**
 * Middleware each request would run for nothing here: the SDK's own logging (its output is not
 * used: failures reach the caller), a user-agent header built anew per request, and the trace
 * header of AWS Lambda.
 */
const UNUSED_MIDDLEWARE = ['loggerMiddleware', 'getUserAgentMiddleware', 'recursionDetectionMiddleware'];

export class S3MediaStore implements MediaStore {
  readonly kind = 's3';
  private readonly client: S3Client;

  constructor(private readonly opts: S3StoreOptions) {
    this.client = new S3Client({
      region: opts.region,
      forcePathStyle: opts.forcePathStyle,
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      ...(opts.accessKeyId && opts.secretAccessKey ? { credentials: { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey } } : {}),
      // The job's own retries (with a fresh Graph URL) handle an unavailable store.
      maxAttempts: 2,
      requestHandler: new UndiciHttpHandler({ timeoutMs: opts.timeoutMs ?? 30_000 }),
      // A request's middleware chain is resolved once per command type, not on every request
      // (which is why no request passes options of its own).
      cacheMiddleware: true,
      // undici sends no `Expect: 100-continue`; an upload the store refuses fails at its answer.
      expectContinueHeader: false,
      // A download is checked against Meta's SHA-256 as it streams, and what is served is read
      // back whole by clients: the SDK's own CRC32 of every upload (aws-chunked framing, a
      // trailer) and of every read would only cost CPU per object. Operations S3 requires a
      // checksum for still get one.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // The SDK warns on the console whenever a streamed upload fails (it cannot retry one); the
      // download job logs, counts and retries it already.
      logger: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
    });
    for (const name of UNUSED_MIDDLEWARE) this.client.middlewareStack.remove(name);
  }

  /**
   * Uploads to a temp key of its own, then, once the body ended cleanly (it fails on a size or
   * SHA-256 mismatch), copies it server-side to `key` unless `key` holds an object of that size
   * already; a cut or refused upload never touches `key`.
   */
  async put(key: string, body: Readable, contentType: string, size?: number | null): Promise<void> {
    const tmp = `${TMP_PREFIX}${randomBytes(9).toString('hex')}`;
    await this.upload(tmp, body, contentType, size);
    try {
      const bytes = size ?? (await this.size(tmp));
      if (bytes === null) throw new Error(`media upload ${tmp} not found after it completed`);
      if ((await this.size(key)) !== bytes) {
        await this.client.send(new CopyObjectCommand({ Bucket: this.opts.bucket, Key: key, CopySource: `${this.opts.bucket}/${tmp}`, MetadataDirective: 'COPY' }));
      }
    } finally {
      // One the crash of this process leaves is the sweep's (removeStale).
      await this.delete(tmp).catch(() => undefined);
    }
  }

  private async upload(key: string, body: Readable, contentType: string, size?: number | null): Promise<void> {
    const params = { Bucket: this.opts.bucket, Key: key, Body: body, ContentType: contentType };
    // A body that fails (a check, the source gone) ends the request at once (the transport sees
    // to it), and its error is the one to report; one that failed is never copied into place.
    let failure: unknown;
    body.once('error', (err) => (failure = err));
    try {
      if (size == null || size > MAX_PUT_BYTES) {
        await new Upload({ client: this.client, params, partSize: PART_BYTES, queueSize: 1, leavePartsOnError: false }).done();
      } else {
        await this.client.send(new PutObjectCommand({ ...params, ContentLength: size }));
      }
    } catch (err) {
      throw failure ?? err;
    }
    if (failure !== undefined || body.errored) throw failure ?? body.errored;
  }

  /**
   * Deletes temp objects of uploads a crash cut short, untouched for `olderThanMs` (a live upload
   * is either not listed yet or written to as it goes). Multipart uploads a crash left are the
   * bucket's lifecycle rule's (AbortIncompleteMultipartUpload).
   */
  async removeStale(olderThanMs: number): Promise<number> {
    const listed = await this.client.send(new ListObjectsV2Command({ Bucket: this.opts.bucket, Prefix: TMP_PREFIX, MaxKeys: SWEEP_BATCH }));
    const before = Date.now() - olderThanMs;
    const stale = (listed.Contents ?? []).filter((o) => o.Key && o.LastModified && o.LastModified.getTime() < before).map((o) => ({ Key: o.Key! }));
    if (stale.length === 0) return 0;
    await this.client.send(new DeleteObjectsCommand({ Bucket: this.opts.bucket, Delete: { Objects: stale, Quiet: true } }));
    return stale.length;
  }

  async size(key: string): Promise<number | null> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.opts.bucket, Key: key }));
      return head.ContentLength ?? 0;
    } catch (err) {
      if (err instanceof NotFound || err instanceof NoSuchKey || (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return null;
      throw err;
    }
  }

  async get(key: string, range?: ByteRange): Promise<StoredObject> {
    const out = await this.client.send(new GetObjectCommand({ Bucket: this.opts.bucket, Key: key, ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }));
    const total = out.ContentRange ? Number(out.ContentRange.split('/')[1]) : (out.ContentLength ?? 0);
    return { size: total, body: out.Body as Readable };
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.opts.bucket, Key: key }));
  }

  presign(key: string, seconds: number, contentType: string): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.opts.bucket, Key: key, ResponseContentType: contentType }), { expiresIn: seconds });
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
