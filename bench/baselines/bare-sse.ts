// Baseline server for the fan-out benchmark: bare node:http SSE subscribed to the same Redis
// channel the service's web processes listen on, writing each published batch once-formatted to
// every client (no auth, no per-client filter, no framework). The service's fan-out is reported
// against this one, fed by the same worker with the same events.
// argv: port, redis URL, channel.
import http from 'node:http';
import { Redis } from 'ioredis';

const [port, redisUrl, channel] = [Number(process.argv[2] ?? 0), process.argv[3]!, process.argv[4]!];
const clients = new Set<http.ServerResponse>();
let seq = 0;

const subscriber = new Redis(redisUrl);
subscriber.on('message', (_channel: string, message: string) => {
  let chunk = '';
  for (const e of JSON.parse(message) as { type: string }[]) chunk += `id: ${++seq}\nevent: ${e.type}\ndata: ${JSON.stringify({ ...e, id: seq })}\n\n`;
  for (const res of clients) res.write(chunk);
});

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  res.write('retry: 3000\n: connected\n\n');
  clients.add(res);
  req.on('close', () => clients.delete(res));
});
server.keepAliveTimeout = 65_000;
void subscriber.subscribe(channel).then(() => server.listen(port, '127.0.0.1', () => process.send?.('ready')));
process.on('SIGTERM', () => {
  for (const res of clients) res.destroy();
  subscriber.disconnect();
  server.close(() => process.exit(0));
});
