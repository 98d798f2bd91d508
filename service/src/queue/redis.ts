// ioredis connections from config: one URL, or Sentinels with a master name.
import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config/env.js';
import { followPromotions } from './follow-promotions.js';

/**
 * How long a BullMQ worker waits after a failed fetch (Redis away) before it tries again. BullMQ's
 * default is 15 s: after a Redis restart or failover, processing would sit idle that long while
 * acked webhooks wait. Reconnects are already paced by the connection's retry strategy.
 */
export const WORKER_RUN_RETRY_MS = 1_000;

/**
 * The webhook connection's longest wait between reconnects through Sentinel. Each attempt asks a
 * Sentinel where the master is, so a short wait is what lets it reach a promoted replica at once:
 * with the 2 s of the others, webhooks went on answering 503 up to 2 s after the promotion.
 */
export const SENTINEL_PRODUCER_RETRY_MAX_MS = 200;

export type RedisPurpose = 'producer' | 'worker' | 'client';

function sentinelAddresses(list: readonly string[]): { host: string; port: number }[] {
  return list.map((hp) => {
    const [host, port] = hp.split(':');
    return { host: host!, port: Number(port) };
  });
}

export function redisOptions(config: Config, purpose: RedisPurpose): RedisOptions {
  const common: RedisOptions = {
    // BullMQ blocking commands and our own retries need unbounded per-request retries:
    // a command waits for the reconnect instead of failing while Sentinel fails over.
    maxRetriesPerRequest: purpose === 'worker' ? null : 1,
    // The webhook must answer 503 at once when Redis is away, not hold Meta's request in a queue.
    enableOfflineQueue: purpose !== 'producer',
    enableReadyCheck: true,
    connectionName: `wa-router:${purpose}`,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), config.REDIS_SENTINELS && purpose === 'producer' ? SENTINEL_PRODUCER_RETRY_MAX_MS : 2_000),
    // After a failover the old master turns replica: reconnect on READONLY instead of failing writes.
    reconnectOnError: (err) => err.message.startsWith('READONLY'),
  };
  if (config.REDIS_SENTINELS) {
    return {
      ...common,
      sentinels: sentinelAddresses(config.REDIS_SENTINELS),
      name: config.REDIS_MASTER_NAME,
      password: config.REDIS_PASSWORD,
      sentinelPassword: config.REDIS_SENTINEL_PASSWORD,
    };
  }
  const url = new URL(config.REDIS_URL!);
  return {
    ...common,
    host: url.hostname,
    port: Number(url.port || 6379),
    username: url.username || undefined,
    password: config.REDIS_PASSWORD ?? (url.password ? decodeURIComponent(url.password) : undefined),
    db: url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0,
    tls: url.protocol === 'rediss:' ? {} : undefined,
  };
}

export function createRedis(config: Config, purpose: RedisPurpose): Redis {
  const redis = new Redis(redisOptions(config, purpose));
  // A master that stalls (fork, fsync, CLIENT PAUSE) while Sentinel promotes a replica never
  // answers READONLY until Sentinel converts it, seconds after the stall: the webhook path
  // follows +switch-master at once instead of queueing every enqueue behind the stalled one.
  if (config.REDIS_SENTINELS && purpose === 'producer') {
    followPromotions(redis, { sentinels: sentinelAddresses(config.REDIS_SENTINELS), masterName: config.REDIS_MASTER_NAME, sentinelPassword: config.REDIS_SENTINEL_PASSWORD });
  }
  return redis;
}
