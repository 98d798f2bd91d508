// Regression: the per-channel outbound queues had no error listener, so while Redis was away
// BullMQ printed every connection error of every channel's queue to the console, outside the
// structured log. Now each goes to the listener, once per 10 s whatever the number of channels.
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, expect, inject, it, vi } from 'vitest';
import { OutboundQueues } from '../../src/queue/outbound.js';
import { freePort } from '../../../scripts/stack/proc.js';
import { startRedis, type RedisHandle } from '../../../scripts/stack/redis.js';
import { eventually } from '../helpers/app.js';

let redis: RedisHandle | undefined;
let connection: Redis | undefined;
let queues: OutboundQueues | undefined;

afterAll(async () => {
  connection?.disconnect();
  await queues?.close().catch(() => undefined);
  await redis?.stop();
});

it('reports queue errors to its listener, once for all channels, and prints nothing while Redis is away', async () => {
  redis = await startRedis({ dir: path.join(inject('stackDir'), `outbound-queue-errors-${process.pid}`), port: await freePort(), password: 'queue-errors' });
  connection = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  connection.on('error', () => undefined);
  const reported: string[] = [];
  queues = new OutboundQueues(connection, `qerr-${process.pid}`, { attempts: 1, backoffMs: 1_000 }, (err) => reported.push(err.message));
  await queues.enqueue([1, 2, 3].map((channelId) => ({ messageId: channelId, channelId, to: '5511900000903' })));

  const printed = vi.spyOn(console, 'error');
  try {
    await redis.stop();
    redis = undefined;
    // Reconnects every 100 ms: a couple of seconds is dozens of errors on each of the 3 queues.
    await eventually(async () => reported.length > 0, { timeoutMs: 10_000, what: 'a queue error reported' });
    await new Promise((r) => setTimeout(r, 2_000));
    expect(reported).toHaveLength(1);
    expect(printed).not.toHaveBeenCalled();
  } finally {
    printed.mockRestore();
  }
});
