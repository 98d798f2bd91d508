// Events for a number no channel serves yet are kept unrouted (see inbound-store.ts); this stores
// them once a channel does, exactly once whatever the timing. Storing an event is what clears its
// flag, so nothing is lost if a replay fails, and it is tried three ways:
//  - at once when the channel is saved, after every worker dropped its cached "no such channel";
//  - again a little later, for events whose store began before the channel was committed;
//  - by a periodic sweep, for whatever both missed (Redis away while the channel was saved, a
//    worker restarting, a lost pub/sub message). Every worker process looks every 30 s, one at a
//    time (a Redis lease), and enqueues a replay only when Postgres holds a routable unrouted
//    event: an idle deployment keeps its inbound queue empty (no standing delayed job in the queue
//    depths, the autoscaler or the dead letters, even while Postgres is away).
import type { Queue } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../log.js';
import { JOBS, type InboundJobData } from '../queue/names.js';
import { routableUnroutedEvents, type ChannelResolver } from '../store/channels.js';
import type { Pool } from '../store/pool.js';

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
export function followSavedChannels(deps: UnroutedReplayDeps & { readonly redisOptions: RedisOptions; readonly resolver: ChannelResolver; readonly pool: Pool }): () => Promise<void> {
  const sub = new Redis({ ...deps.redisOptions, lazyConnect: true, connectionName: 'wa-router:channels' });
  sub.on('error', (err) => deps.log.warn({ err: err.message }, 'channel events subscriber error'));
  sub.on('message', (_topic: string, phoneNumberId: string) => deps.resolver.forget(phoneNumberId));
  // ioredis subscribes again after a reconnect by itself.
  sub.subscribe(topic(deps.prefix)).catch((err: Error) => deps.log.warn({ err: err.message }, 'channel events not followed yet'));
  const cmd = new Redis({ ...deps.redisOptions, lazyConnect: true, connectionName: 'wa-router:unrouted-sweep' });
  cmd.on('error', (err) => deps.log.warn({ err: err.message }, 'unrouted sweep connection error'));
  const lease = `${deps.prefix}:unrouted-sweep`;
  const sweep = async () => {
    // One process per period: the lease expires just before the next period, and nobody releases it.
    if ((await cmd.set(lease, String(process.pid), 'PX', SWEEP_EVERY_MS - 1_000, 'NX')) !== 'OK') return;
    if ((await routableUnroutedEvents(deps.pool, null, 0, 1)).length === 0) return;
    await deps.queue.add(JOBS.replayUnrouted, { events: [], replayFor: null }, jobOptions(deps.attempts));
  };
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const loop = () => {
    if (closed) return;
    timer = setTimeout(() => void sweep().catch((err: Error) => deps.log.warn({ err: err.message }, 'unrouted sweep skipped; next in 30 s')).finally(loop), SWEEP_EVERY_MS);
  };
  loop();
  return async () => {
    closed = true;
    clearTimeout(timer);
    cmd.disconnect();
    sub.disconnect();
  };
}
