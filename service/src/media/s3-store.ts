// Any S3-compatible store (AWS S3, MinIO, SeaweedFS, R2, ...): uploads streamed straight through
// (one PutObject when the size is known, multipart otherwise), ranged reads and presigned GETs.
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client, NotFound, NoSuchKey } from '@aws-sdk/client-s3';
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
/** S3's largest PutObject. */
const MAX_PUT_BYTES = 5 * 1024 ** 3;

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

  async put(key: string, body: Readable, contentType: string, size?: number | null): Promise<void> {
    const params = { Bucket: this.opts.bucket, Key: key, Body: body, ContentType: contentType };
    if (size == null || size > MAX_PUT_BYTES) {
      await new Upload({ client: this.client, params, partSize: PART_BYTES, queueSize: 1, leavePartsOnError: false }).done();
      return;
    }
    // The object exists only once all `size` bytes arrived; a body that fails first (a check, the
    // source gone) ends the request at once (the transport sees to it), and its error is the one
    // to report.
    let failure: unknown;
    body.once('error', (err) => (failure = err));
    try {
      await this.client.send(new PutObjectCommand({ ...params, ContentLength: size }));
    } catch (err) {
      throw failure ?? err;
    }
  }

  /** An upload a crash cut short is a multipart upload the bucket's lifecycle rule (AbortIncompleteMultipartUpload) ends. */
  removeStale(): Promise<number> {
    return Promise.resolve(0);
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
