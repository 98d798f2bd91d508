// What a store receives from the verifying stream: a store that completes an object once its
// declared length arrived (an S3 PutObject with Content-Length) must never get that last byte of
// bytes that do not match.
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { type MediaCheckError, VerifyingStream } from '../../src/media/verify.js';

async function passThrough(chunks: Buffer[], expect: { size: number; sha256: string }): Promise<{ received: number; error: unknown }> {
  let received = 0;
  const sink = new Writable({ write: (c: Buffer, _e, done) => { received += c.length; done(); } });
  const error = await pipeline(Readable.from(chunks), new VerifyingStream({ maxBytes: 1e9, ...expect }), sink).then(() => null, (err: unknown) => err);
  return { received, error };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('the verifying stream', () => {
  const bytes = randomBytes(300_000);
  const chunks = [bytes.subarray(0, 100_000), bytes.subarray(100_000, 200_000), bytes.subarray(200_000)];

  it('passes every byte of a match', async () => {
    expect(await passThrough(chunks, { size: bytes.length, sha256: sha(bytes) })).toEqual({ received: bytes.length, error: null });
  });

  it('never lets the declared length through on a SHA-256 mismatch', async () => {
    const { received, error } = await passThrough(chunks, { size: bytes.length, sha256: sha(randomBytes(8)) });
    expect((error as MediaCheckError).code).toBe('sha256_mismatch');
    expect(received).toBeLessThan(bytes.length);
  });

  it('cuts a body longer than declared before the declared length is through', async () => {
    const { received, error } = await passThrough(chunks, { size: 200_000, sha256: sha(bytes.subarray(0, 200_000)) });
    expect((error as MediaCheckError).code).toBe('size_mismatch');
    expect(received).toBeLessThan(200_000);
  });
});
