// The S3 store of tests and of the local stack (scripts/stack/versitygw.ts) on its own: a start that
// fails leaves no server behind, a restart keeps the data, presigned URLs serve ranges and expire.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { startS3, versitygwBinary, type S3Handle } from '../../../scripts/stack/versitygw.js';
import { freePort, stopPid } from '../../../scripts/stack/proc.js';

/** Live versitygw processes working in `dir` (startS3 runs the server with that cwd). */
function serversIn(dir: string): number[] {
  const pids: number[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (fs.readlinkSync(`/proc/${p}/cwd`).startsWith(dir) && fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('versitygw')) pids.push(Number(p));
    } catch {
      // exited meanwhile, or not readable: not a server of this file
    }
  }
  return pids;
}

const dirs: string[] = [];
const newDir = () => {
  const d = path.join(inject('stackDir'), `s3-store-${randomBytes(4).toString('hex')}`);
  dirs.push(d);
  return d;
};
afterAll(async () => {
  for (const d of dirs) for (const pid of serversIn(d)) await stopPid(pid);
});

const clientOf = (s3: S3Handle) => new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });

describe('the S3 store of the stack', () => {
  it('finds its binary without holding the event loop (a cold build takes minutes)', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    try {
      expect(fs.existsSync(await versitygwBinary())).toBe(true);
    } finally {
      clearInterval(timer);
    }
    expect(ticks, 'timer ticks while the binary was looked up').toBeGreaterThan(0);
  }, 120_000);

  it('stops the server it spawned when the start fails afterwards (the bucket refused)', async () => {
    const dir = newDir();
    await expect(startS3({ dir, bucket: 'Not_A_Valid_Bucket' })).rejects.toThrow();
    expect(serversIn(dir), 'versitygw processes left running').toEqual([]);
  }, 120_000);

  it('keeps the bucket and its objects over a restart on the same dir, port and keys', async () => {
    const opts = { dir: newDir(), bucket: 'wa-router-media', accessKeyId: 'wakey0001', secretAccessKey: 'secret-0001-abcdefgh', port: await freePort() };
    const first = await startS3(opts);
    const client = clientOf(first);
    await client.send(new PutObjectCommand({ Bucket: first.bucket, Key: 'k', Body: 'hello' }));
    await first.stop();
    const second = await startS3(opts);
    try {
      const got = await client.send(new GetObjectCommand({ Bucket: second.bucket, Key: 'k' }));
      expect(await got.Body!.transformToString()).toBe('hello');
    } finally {
      client.destroy();
      await second.stop();
    }
  }, 120_000);

  it('serves ranges by a presigned URL and refuses it once expired', async () => {
    const s3 = await startS3({ dir: newDir(), bucket: 'wa-router-media' });
    const client = clientOf(s3);
    try {
      await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'k', Body: 'hello' }));
      const short = await getSignedUrl(client, new GetObjectCommand({ Bucket: s3.bucket, Key: 'k' }), { expiresIn: 3 });
      const long = await getSignedUrl(client, new GetObjectCommand({ Bucket: s3.bucket, Key: 'k' }), { expiresIn: 60 });
      expect((await fetch(short)).status).toBe(200);
      const ranged = await fetch(long, { headers: { range: 'bytes=1-3' } });
      expect([ranged.status, await ranged.text()]).toEqual([206, 'ell']);
      await new Promise((r) => setTimeout(r, 4_100));
      expect((await fetch(short)).status).toBe(403);
      expect((await fetch(long)).status).toBe(200);
    } finally {
      client.destroy();
      await s3.stop();
    }
  }, 120_000);
});
