// A plain subscriber of the events channel in a process of its own (forked by bench/fanout.ts):
// when each `message.created` reaches Redis's subscribers, the worker's part of the fan-out's
// latency. In the benchmark's own process it would also time that process's load generator
// (signing and posting the webhooks), whose event loop it would share.
// argv: redis URL, channel. IPC: 'ready' once subscribed; { report } → { publishes, arrivals: [messageId, epochMs][] }.
import { Redis } from 'ioredis';

const [url, channel] = [process.argv[2]!, process.argv[3]!];
const arrivals = new Map<number, number>();
let publishes = 0;
const redis = new Redis(url);
redis.on('message', (_channel: string, message: string) => {
  const at = performance.timeOrigin + performance.now();
  publishes++;
  for (const e of JSON.parse(message) as { type: string; messageId?: number }[]) if (e.type === 'message.created' && e.messageId !== undefined) arrivals.set(e.messageId, at);
});
void redis.subscribe(channel).then(() => process.send?.('ready'));

process.on('message', (msg: { report?: true }) => {
  if (!msg.report) return;
  process.send?.({ publishes, arrivals: [...arrivals] });
  redis.disconnect();
  process.disconnect();
});
