// The S3 client's own second attempt (maxAttempts: 2) on a connection the store drops before
// answering (a pooled socket it closed): the SDK's node:http handler retried it; the undici transport
// must report the failure in the SDK's terms so it does too.
import { S3Client, HeadObjectCommand } from '@aws-sdk/client-s3';
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { S3MediaStore } from '../../src/media/s3-store.js';

let server: Server | undefined;
afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

/** A store that drops the first request's connection without an answer, then answers HEAD 200. */
async function flakyStore(): Promise<{ endpoint: string; requests: () => number }> {
  let n = 0;
  server = createServer((sock: Socket) => {
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      while (buf.includes('\r\n\r\n')) {
        buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
        n++;
        if (n === 1) { sock.destroy(); return; }
        sock.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nx-amz-meta-x: 1\r\nETag: "e"\r\nContent-Type: image/jpeg\r\nLast-Modified: Tue, 01 Dec 2026 00:00:00 GMT\r\nx-test-size: 123\r\n\r\n');
      }
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  const port = (server!.address() as { port: number }).port;
  return { endpoint: `http://127.0.0.1:${port}`, requests: () => n };
}

const creds = { accessKeyId: 'k', secretAccessKey: 's' };

describe('S3 transport retries', () => {
  it('baseline: the SDK default handler retries a dropped connection (HEAD succeeds on attempt 2)', async () => {
    const s = await flakyStore();
    const client = new S3Client({ region: 'us-east-1', endpoint: s.endpoint, forcePathStyle: true, credentials: creds, maxAttempts: 2 });
    try {
      await expect(client.send(new HeadObjectCommand({ Bucket: 'b', Key: 'k' }))).resolves.toBeDefined();
      expect(s.requests()).toBe(2);
    } finally {
      client.destroy();
    }
  });

  it('S3MediaStore (undici transport) retries a dropped connection like the default handler did', async () => {
    const s = await flakyStore();
    const store = new S3MediaStore({ bucket: 'b', region: 'us-east-1', endpoint: s.endpoint, forcePathStyle: true, ...creds, timeoutMs: 5_000 });
    try {
      const got = await store.size('k').then((v) => ({ ok: v }), (err: Error & { code?: string }) => ({ err: `${err.name} ${err.code ?? ''} ${err.message}` }));
      expect(got).toEqual({ ok: 0 });
      expect(s.requests()).toBe(2);
    } finally {
      await store.close();
    }
  });
});
