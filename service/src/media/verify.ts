// The bytes of a download counted and hashed as they pass: the stream fails past the size limit
// (nothing more is read) and at its end when size or SHA-256 differ from what Meta declared, so
// the store never completes an object that does not match.
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
  /** Hex SHA-256 of what passed, once the stream ended. */
  digest = '';

  constructor(private readonly expect: { maxBytes: number; size?: number | null; sha256?: string | null }) {
    super();
  }

  get count() {
    return this.bytes;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.expect.maxBytes) return done(new MediaCheckError('too_large', `more than ${this.expect.maxBytes} bytes`));
    this.hash.update(chunk);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    this.digest = this.hash.digest('hex');
    if (this.expect.size != null && this.bytes !== this.expect.size) return done(new MediaCheckError('size_mismatch', `${this.bytes} bytes, Meta declared ${this.expect.size}`));
    if (this.expect.sha256 && !sameSha256(this.expect.sha256, this.digest)) return done(new MediaCheckError('sha256_mismatch', `SHA-256 ${this.digest} differs from Meta's ${this.expect.sha256}`));
    done();
  }
}
