// Any S3-compatible store (AWS S3, MinIO, SeaweedFS, R2, ...): uploads streamed straight to their
// key in one request when the bytes' SHA-256 is known (a PutObject carrying it for the store to
// check; multipart when the size is unknown and over one part), through a temp key and a
// server-side copy when it is not, ranged reads, presigned GETs.
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
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { UndiciHttpHandler } from './s3-transport.js';
import type { ByteRange, MediaStore, PutOptions, StoredObject } from './store.js';

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
/** S3's largest PutObject. */
const MAX_PUT_BYTES = 5 * 1024 ** 3;
/**
 * Where uploads without a declared SHA-256 land before they are copied to their key (until
 * 2026-12-01 every upload did); the sweep clears what a crash left there.
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
   * `sha256` (hex), the bytes' declared SHA-256, is sent as their S3 checksum: the store hashes
   * what it receives and refuses a body that does not match, so a body cut short (the source
   * gone, this process killed mid-upload) or altered on the way never replaces the whole object
   * stored at `key`; one request, straight to `key`. Without it the bytes are written to a temp
   * key of their own and copied server-side to `key` once the body ended whole (two more
   * requests: the copy and the temp key's delete). Versity S3 Gateway keeps the bytes of a cut
   * PutObject sent without a checksum (the integrity test shows it), and a key without a declared
   * SHA-256 is no less shared: a media row's own key (`media/<row id>`) is written by every run of
   * its job (a stalled job's first run may still be uploading after the second stored it) and,
   * once stored, is the key later media of the same bytes are deduplicated onto. Only a caller
   * whose key no other write will ever name (`unique`: an API upload's random key, deleted when its
   * put fails) may skip both. A multipart upload (unknown size, over one part) goes straight to
   * `key` either way: it shows nothing there until it completes, and it completes only once the
   * body ended cleanly.
   */
  async put(key: string, body: Readable, contentType: string, size?: number | null, sha256?: string | null, opts?: PutOptions): Promise<void> {
    const checksum = sha256 ? Buffer.from(sha256, 'hex').toString('base64') : undefined;
    const aside = checksum || opts?.unique ? undefined : `${TMP_PREFIX}${randomBytes(9).toString('hex')}`;
    /** Set once a PutObject to `aside` was sent: the copy (or, on failure, the delete) is then due. */
    const wrote = { aside: false };
    // A body that fails (a check, the source gone) ends the request at once (the transport sees
    // to it), and its error is the one to report; one that failed is never copied into place.
    let failure: unknown;
    body.once('error', (err) => (failure = err));
    try {
      try {
        if (size != null && size <= MAX_PUT_BYTES) {
          wrote.aside = aside !== undefined;
          await this.client.send(new PutObjectCommand({ Bucket: this.opts.bucket, Key: aside ?? key, Body: body, ContentType: contentType, ContentLength: size, ChecksumSHA256: checksum }));
        } else await this.putUnsized(key, body, contentType, checksum, aside, wrote);
      } catch (err) {
        throw failure ?? err;
      }
      if (failure !== undefined || body.errored) throw failure ?? body.errored;
      if (wrote.aside) await this.client.send(new CopyObjectCommand({ Bucket: this.opts.bucket, Key: key, CopySource: `${this.opts.bucket}/${aside}`, MetadataDirective: 'COPY' }));
    } finally {
      // One a crash of this process leaves is the sweep's (removeStale).
      if (wrote.aside) await this.delete(aside!).catch(() => undefined);
    }
  }

  /**
   * A body of unknown size: its first part is read (up to PART_BYTES, held in memory as a part
   * is anyway); one that ends within it goes in one PutObject (with the checksum, or to `aside`
   * when there is none), a longer one as a multipart upload to `key`, which shows nothing at
   * `key` until it completes, and it completes only once the body ended cleanly (its last part
   * is read only then). Its ETag ends in `-<parts>`.
   */
  private async putUnsized(key: string, body: Readable, contentType: string, checksum: string | undefined, aside: string | undefined, wrote: { aside: boolean }): Promise<void> {
    const chunks = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    try {
      const first: Buffer[] = [];
      let read = 0;
      while (read <= PART_BYTES) {
        const next = await chunks.next();
        if (next.done) {
          const whole = Buffer.concat(first);
          wrote.aside = aside !== undefined;
          await this.client.send(new PutObjectCommand({ Bucket: this.opts.bucket, Key: aside ?? key, Body: whole, ContentType: contentType, ContentLength: whole.length, ChecksumSHA256: checksum }));
          return;
        }
        first.push(next.value);
        read += next.value.length;
      }
      const rest = Readable.from((async function* () {
        // Handed on one by one (not held here once the upload took them).
        while (first.length > 0) yield first.shift()!;
        for (let next = await chunks.next(); !next.done; next = await chunks.next()) yield next.value;
      })());
      await new Upload({ client: this.client, params: { Bucket: this.opts.bucket, Key: key, Body: rest, ContentType: contentType }, partSize: PART_BYTES, queueSize: 1, leavePartsOnError: false }).done();
    } finally {
      // Stops reading the source when the upload failed first (a no-op once it ended).
      await chunks.return?.();
    }
  }

  /**
   * Deletes temp objects (TMP_PREFIX) untouched for `olderThanMs`: what a crash left of uploads
   * without a declared SHA-256 (and of every upload, before 2026-12-01). Multipart uploads a
   * crash left are the bucket's lifecycle rule's (AbortIncompleteMultipartUpload).
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
