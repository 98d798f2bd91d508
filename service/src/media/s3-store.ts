// Any S3-compatible store (AWS S3, MinIO, SeaweedFS, R2, ...): streamed multipart uploads, ranged
// reads and presigned GETs.
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, S3Client, NotFound, NoSuchKey } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { Readable } from 'node:stream';
import type { ByteRange, MediaStore, StoredObject } from './store.js';

export interface S3StoreOptions {
  readonly bucket: string;
  readonly region: string;
  readonly endpoint?: string;
  readonly accessKeyId?: string;
  readonly secretAccessKey?: string;
  readonly forcePathStyle: boolean;
}

/**
 * S3's smallest multipart part. Each upload holds at most PART_BYTES × QUEUE_SIZE in memory, so
 * MEDIA_CONCURRENCY downloads of 100 MB documents stay a few tens of MB.
 * @defaultValue 5 MiB × 2
 */
const PART_BYTES = 5 * 1024 * 1024;
const QUEUE_SIZE = 2;

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
    });
  }

  async put(key: string, body: Readable, contentType: string): Promise<void> {
    const upload = new Upload({ client: this.client, params: { Bucket: this.opts.bucket, Key: key, Body: body, ContentType: contentType }, partSize: PART_BYTES, queueSize: QUEUE_SIZE, leavePartsOnError: false });
    await upload.done();
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
