// Baseline server for the fan-out benchmark: bare node:http SSE subscribed to the same Redis
// channel the service's web processes listen on, writing each published batch once-formatted to
// every client (no auth, no per-client filter, no framework). The service's fan-out is reported
// against this one, fed by the same worker with the same events.
// argv: port, redis URL, channel.
import http from 'node:http';
import { Redis } from 'ioredis';

const [port, redisUrl, channel] = [Number(process.argv[2] ?? 0), process.argv[3]!, process.argv[4]!];
/** Each client with the event types it asked for (`types=a,b`, as the service reads it; none = all). */
const clients = new Map<http.ServerResponse, Set<string> | null>();
let seq = 0;

const subscriber = new Redis(redisUrl);
subscriber.on('message', (_channel: string, message: string) => {
  const frames = (JSON.parse(message) as { type: string }[]).map((e) => ({ type: e.type, text: `id: ${++seq}\nevent: ${e.type}\ndata: ${JSON.stringify({ ...e, id: seq })}\n\n` }));
  const all = frames.map((f) => f.text).join('');
  // One chunk per distinct filter, not per client.
  const chunks = new Map<Set<string>, string>();
  for (const [res, types] of clients) {
    if (!types) {
      res.write(all);
      continue;
    }
    let chunk = chunks.get(types);
    if (chunk === undefined) chunks.set(types, (chunk = frames.filter((f) => types.has(f.type)).map((f) => f.text).join('')));
    if (chunk) res.write(chunk);
  }
});

const filters = new Map<string, Set<string>>();
const filterOf = (types: string) => {
  let f = filters.get(types);
  if (!f) filters.set(types, (f = new Set(types.split(','))));
  return f;
};

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  res.write('retry: 3000\n: connected\n\n');
  const types = new URL(req.url ?? '/', 'http://x').searchParams.get('types');
  clients.set(res, types ? filterOf(types) : null);
  req.on('close', () => clients.delete(res));
});
server.keepAliveTimeout = 65_000;
void subscriber.subscribe(channel).then(() => server.listen(port, '127.0.0.1', () => process.send?.('ready')));
process.on('SIGTERM', () => {
  for (const res of clients.keys()) res.destroy();
  subscriber.disconnect();
  server.close(() => process.exit(0));
});
