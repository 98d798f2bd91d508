// The bytes of a download counted and hashed as they pass: the stream fails past the size limit
// or the declared size (nothing more is read) and at its end when size or SHA-256 differ from what
// Meta declared, so the store never completes an object that does not match. The last chunk is
// passed on only once it all checked out: a store writing an object of a length given in advance
// (an S3 PutObject with its Content-Length) completes it at its last byte, before any end-of-stream
// error could stop it.
import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

export class MediaCheckError extends Error {
  constructor(readonly code: 'too_large' | 'size_mismatch' | 'sha256_mismatch', message: string) {
    super(message);
    this.name = 'MediaCheckError';
  }
}

/** Meta's sha256 is hex in the media metadata; tolerate base64 too (webhooks have shown both). */
export function sameSha256(declared: string, hex: string): boolean {
  const d = declared.trim();
  if (/^[0-9a-f]{64}$/i.test(d)) return d.toLowerCase() === hex;
  return Buffer.from(d, 'base64').toString('hex') === hex;
}

export class VerifyingStream extends Transform {
  private readonly hash = createHash('sha256');
  private bytes = 0;
  private held: Buffer | undefined;
  /** Hex SHA-256 of what passed, once the stream ended. */
  digest = '';

  constructor(private readonly expect: { maxBytes: number; size?: number | null; sha256?: string | null }) {
    super();
  }

  get count() {
    return this.bytes;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (chunk.length === 0) return done();
    this.bytes += chunk.length;
    if (this.bytes > this.expect.maxBytes) return done(new MediaCheckError('too_large', `more than ${this.expect.maxBytes} bytes`));
    if (this.expect.size != null && this.bytes > this.expect.size) return done(new MediaCheckError('size_mismatch', `more than the ${this.expect.size} bytes Meta declared`));
    this.hash.update(chunk);
    const previous = this.held;
    this.held = chunk;
    done(null, previous);
  }

  override _flush(done: TransformCallback): void {
    this.digest = this.hash.digest('hex');
    if (this.expect.size != null && this.bytes !== this.expect.size) return done(new MediaCheckError('size_mismatch', `${this.bytes} bytes, Meta declared ${this.expect.size}`));
    if (this.expect.sha256 && !sameSha256(this.expect.sha256, this.digest)) return done(new MediaCheckError('sha256_mismatch', `SHA-256 ${this.digest} differs from Meta's ${this.expect.sha256}`));
    done(null, this.held);
  }
}
