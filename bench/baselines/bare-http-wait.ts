// Baseline for replicated acks: bare node:http doing the service's work with nothing else:
// verify the body's HMAC, parse it, then per event-loop tick one BullMQ job holding every body
// of that tick (split at 200, as the service does), one `WAIT 1` on the same connection, and
// the 200s. The least any server must do to ack only what a replica holds.
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

const port = Number(process.argv[2] ?? 0);
const redisUrl = process.argv[3]!;
const appSecret = process.argv[4]!;
const MAX_EVENTS = 200;
const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
const queue = new Queue('bench-bare-wait', { connection, prefix: 'bench' });
const jobOpts = { attempts: 8, backoff: { type: 'exponential', delay: 1_000 }, removeOnComplete: { age: 3_600, count: 1_000 }, removeOnFail: false } as const;
let pending: { body: string; answer: (status: number) => void }[] = [];
let scheduled = false;

function flush(): void {
  scheduled = false;
  const batch = pending;
  pending = [];
  const groups: (typeof batch)[] = [];
  for (let i = 0; i < batch.length; i += MAX_EVENTS) groups.push(batch.slice(i, i + MAX_EVENTS));
  const data = (g: typeof batch) => ({ events: g.map((p) => ({ body: p.body, receivedAt: Date.now() })) });
  const add = groups.length === 1 ? queue.add('webhook-batch', data(groups[0]!), jobOpts) : queue.addBulk(groups.map((g) => ({ name: 'webhook-batch', data: data(g), opts: jobOpts })));
  void add
    .then(() => connection.wait(1, 500))
    .then((n) => batch.forEach((p) => p.answer(n >= 1 ? 200 : 503)), () => batch.forEach((p) => p.answer(503)));
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks);
    const given = Buffer.from(String(req.headers['x-hub-signature-256'] ?? ''));
    const expected = Buffer.from('sha256=' + createHmac('sha256', appSecret).update(raw).digest('hex'));
    const text = raw.toString('utf8');
    if (given.length !== expected.length || !timingSafeEqual(given, expected) || !Array.isArray((JSON.parse(text) as { entry?: unknown }).entry)) {
      res.writeHead(401).end();
      return;
    }
    pending.push({
      body: text,
      answer: (status) => {
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': 19 });
        res.end(status === 200 ? '{"status":"queued"}' : '{"status":"failed"}');
      },
    });
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  });
});
server.keepAliveTimeout = 65_000;
await queue.waitUntilReady();
server.listen(port, '127.0.0.1', () => process.send?.('ready'));
process.on('SIGTERM', () => server.close(() => void queue.close().then(() => connection.quit()).then(() => process.exit(0))));
