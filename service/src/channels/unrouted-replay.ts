// Events for a number no channel serves yet are kept unrouted (see inbound-store.ts); this stores
// them once a channel does, exactly once whatever the timing. Storing an event is what clears its
// flag, so nothing is lost if a replay fails, and it is tried three ways:
//  - at once when the channel is saved, after every worker dropped its cached "no such channel";
//  - again a little later, for events whose store began before the channel was committed;
//  - by a periodic sweep (one scheduler for the whole deployment), for whatever both missed
//    (Redis away while the channel was saved, a worker restarting, a lost pub/sub message).
import type { Queue } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../log.js';
import { JOBS, type InboundJobData } from '../queue/names.js';
import type { ChannelResolver } from '../store/channels.js';

/** Past the resolver's miss cache (2 s) and a slow batch statement. */
const LATE_REPLAY_MS = 5_000;
const SWEEP_EVERY_MS = 30_000;

const topic = (prefix: string) => `${prefix}:channel-saved`;
const jobOptions = (attempts: number) => ({ attempts, backoff: { type: 'exponential', delay: 1_000 }, removeOnComplete: { age: 3_600, count: 1_000 }, removeOnFail: { count: 100 } });

export interface UnroutedReplayDeps {
  readonly queue: Queue<InboundJobData>;
  readonly prefix: string;
  readonly attempts: number;
  readonly log: Logger;
}

/** Called by the channel route once a channel is saved (any process with a Redis connection). */
export async function replaySavedChannel(deps: UnroutedReplayDeps & { readonly redis: Redis }, phoneNumberId: string): Promise<void> {
  try {
    await deps.redis.publish(topic(deps.prefix), phoneNumberId);
    const data: InboundJobData = { events: [], replayFor: phoneNumberId };
    await deps.queue.addBulk([
      { name: JOBS.replayUnrouted, data, opts: jobOptions(deps.attempts) },
      { name: JOBS.replayUnrouted, data, opts: { ...jobOptions(deps.attempts), delay: LATE_REPLAY_MS } },
    ]);
  } catch (err) {
    // The channel is saved; the sweep stores its events within SWEEP_EVERY_MS.
    deps.log.warn({ phoneNumberId, err: (err as Error).message }, 'unrouted events not replayed yet; the periodic sweep will');
  }
}

/**
 * In each worker process: drops cached misses when another process saves a channel, and keeps the
 * periodic sweep scheduled. Returns the closer.
 */
export function followSavedChannels(deps: UnroutedReplayDeps & { readonly redisOptions: RedisOptions; readonly resolver: ChannelResolver }): () => Promise<void> {
  const sub = new Redis({ ...deps.redisOptions, lazyConnect: true, connectionName: 'wa-router:channels' });
  sub.on('error', (err) => deps.log.warn({ err: err.message }, 'channel events subscriber error'));
  sub.on('message', (_topic: string, phoneNumberId: string) => deps.resolver.forget(phoneNumberId));
  // ioredis subscribes again after a reconnect by itself.
  sub.subscribe(topic(deps.prefix)).catch((err: Error) => deps.log.warn({ err: err.message }, 'channel events not followed yet'));
  deps.queue
    .upsertJobScheduler('replay-unrouted-sweep', { every: SWEEP_EVERY_MS }, { name: JOBS.replayUnrouted, data: { events: [], replayFor: null }, opts: jobOptions(1) })
    .catch((err: Error) => deps.log.warn({ err: err.message }, 'unrouted sweep not scheduled yet'));
  return async () => {
    sub.disconnect();
  };
}
