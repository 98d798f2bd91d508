// Baseline for replicated acks: bare node:http doing BullMQ `add` of each body, then one
// `WAIT 1` per event-loop tick shared by every request of that tick, then 200. The least any
// server must do to ack only what a replica holds.
import http from 'node:http';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

const port = Number(process.argv[2] ?? 0);
const redisUrl = process.argv[3]!;
const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
const queue = new Queue('bench-bare-wait', { connection, prefix: 'bench' });
let tick: Promise<void>[] = [];
let waiting: (() => void)[] = [];
let scheduled = false;

function flush(): void {
  scheduled = false;
  const adds = tick;
  const done = waiting;
  tick = [];
  waiting = [];
  void Promise.all(adds)
    .then(() => connection.wait(1, 500))
    .then(() => done.forEach((d) => d()));
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    tick.push(queue.add('event', { events: [{ body: Buffer.concat(chunks).toString('utf8'), receivedAt: Date.now() }] }, { removeOnComplete: true }).then(() => undefined));
    waiting.push(() => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 19 });
      res.end('{"status":"queued"}');
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
