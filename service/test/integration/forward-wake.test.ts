// Forwarding wake-ups through Redis pub/sub when Redis is away as the worker boots: the first
// subscribe fails (its retries spent), and wake-ups must still arrive once Redis answers.
import fs from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, expect, inject, it } from 'vitest';
import { ForwardWake } from '../../src/router/forwarding/wake.js';
import { startRedis, type RedisHandle } from '../../../scripts/stack/redis.js';
import { freePort } from '../../../scripts/stack/proc.js';
import { eventually } from '../helpers/app.js';
import type { Logger } from '../../src/log.js';

const password = 'wake-pass';
const dir = path.join(inject('stackDir'), `forward-wake-${process.pid}`);
const warnings: string[] = [];
const log = { warn: (_o: unknown, msg: string) => void warnings.push(msg), info: () => undefined, error: () => undefined, debug: () => undefined } as unknown as Logger;
let server: RedisHandle | undefined;
const closers: (() => Promise<void> | void)[] = [];

afterAll(async () => {
  for (const close of closers) await close();
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

it('subscribes once Redis answers when the first subscribe failed at boot', async () => {
  const port = await freePort();
  // The web/worker client's options (src/queue/redis.ts): one retry per command.
  const client = new Redis({ port, password, maxRetriesPerRequest: 1, retryStrategy: () => 50 });
  client.on('error', () => undefined);
  closers.push(() => client.disconnect());
  let woke = 0;
  const channel = ForwardWake.channelFor(`wake-${process.pid}`);
  closers.push(ForwardWake.subscribe(client, channel, log, () => woke++));
  await eventually(async () => warnings.some((m) => m.startsWith('forwarding: wake-ups not subscribed')), { what: 'the first subscribe failed' });
  server = await startRedis({ dir, port, password });
  const wake = new ForwardWake(client, channel);
  await eventually(async () => {
    wake.publish();
    return woke > 0;
  }, { what: 'a wake-up received after Redis came back', intervalMs: 200, timeoutMs: 20_000 });
  expect(woke).toBeGreaterThan(0);
});
