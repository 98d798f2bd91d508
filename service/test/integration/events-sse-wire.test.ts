// The SSE bytes on the wire when a delivery's chunk is written straight to the socket: a request
// pipelined behind another one on the same connection, an HTTP/1.0 client, and heartbeats between
// deliveries. Every chunk must be framed exactly (size in bytes, CRLF).
import net from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { API_TOKEN, createTestDb, type TestDb } from '../helpers/context.js';
import { eventually, startApp, type RunningApp } from '../helpers/app.js';

let db: TestDb;
let app: RunningApp;
let redis: Redis;
beforeAll(async () => {
  db = await createTestDb();
  app = await startApp(db, 'web', { EVENTS_HEARTBEAT_MS: '500' });
  redis = new Redis(inject('redisUrl'));
});
afterAll(async () => {
  redis?.disconnect();
  await app?.stop();
  await db?.drop();
});

/** Splits a chunked body strictly; throws at the first misframed byte. Returns the decoded text and whether it ended. */
function dechunk(body: Buffer): string {
  let out = Buffer.alloc(0);
  let i = 0;
  for (;;) {
    const eol = body.indexOf('\r\n', i);
    if (eol < 0) break;
    const size = parseInt(body.subarray(i, eol).toString('latin1'), 16);
    if (!Number.isFinite(size) || !/^[0-9a-f]+$/i.test(body.subarray(i, eol).toString('latin1'))) throw new Error(`bad chunk size line at ${i}: ${JSON.stringify(body.subarray(i, eol + 2).toString('latin1').slice(0, 40))}`);
    const start = eol + 2;
    if (body.length < start + size + 2) break;
    if (body.subarray(start + size, start + size + 2).toString('latin1') !== '\r\n') throw new Error(`chunk of ${size} bytes not followed by CRLF`);
    out = Buffer.concat([out, body.subarray(start, start + size)]);
    i = start + size + 2;
    if (size === 0) break;
  }
  return out.toString('utf8');
}

function raw(request: string) {
  let got = Buffer.alloc(0);
  const socket = net.connect(new URL(app.url).port as unknown as number, '127.0.0.1', () => socket.write(request));
  socket.on('data', (d) => (got = Buffer.concat([got, d])));
  socket.on('error', () => undefined);
  return { bytes: () => got, close: () => socket.destroy() };
}

const channel = () => `${app.app.config.QUEUE_PREFIX}:events`;
const title = 'Mensagem não entregue ✓ 受信者に届きませんでした 📵';
const publish = (n: number) => redis.publish(channel(), JSON.stringify([{ type: 'message.status', conversationId: 9000 + n, channelId: 1, messageId: 3, status: 'failed', error: { code: 131026, title } }]));
const subscribers = async (n: number) => eventually(async () => ((await redis.pubsub('NUMSUB', channel())) as [string, number])[1] >= n, { what: 'subscription' });

it('a stream pipelined behind another request gets well-framed chunks', async () => {
  const c = raw(
    `GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n` +
    `GET /v1/events?access_token=${API_TOKEN}&types=message.status HTTP/1.1\r\nhost: x\r\n\r\n`,
  );
  try {
    await subscribers(1);
    for (let n = 0; n < 3; n++) {
      await publish(n);
      await new Promise((r) => setTimeout(r, 700));
    }
    const text = c.bytes().toString('latin1');
    const second = text.indexOf('HTTP/1.1 200', 5);
    expect(second).toBeGreaterThan(0);
    const headEnd = c.bytes().indexOf('\r\n\r\n', second);
    expect(text.slice(second, headEnd)).toMatch(/transfer-encoding: chunked/i);
    const body = dechunk(c.bytes().subarray(headEnd + 4));
    const data = body.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)) as { conversationId: number; error: { title: string } });
    expect(data.map((d) => d.conversationId)).toEqual([9000, 9001, 9002]);
    expect(data.every((d) => d.error.title === title)).toBe(true);
    expect(body).toContain(': ping');
  } finally {
    c.close();
  }
});

it('an HTTP/1.0 client gets the events unframed', async () => {
  const c = raw(`GET /v1/events?access_token=${API_TOKEN}&types=message.status HTTP/1.0\r\nhost: x\r\n\r\n`);
  try {
    await subscribers(1);
    await publish(10);
    await eventually(async () => c.bytes().toString('utf8').includes(title), { what: 'the event' });
    const text = c.bytes().toString('utf8');
    expect(text).not.toMatch(/transfer-encoding/i);
    expect(text.slice(text.indexOf('\r\n\r\n') + 4)).toMatch(/^retry: 3000\n/);
  } finally {
    c.close();
  }
});
