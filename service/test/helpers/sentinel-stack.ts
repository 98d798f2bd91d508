// A Redis master with replicas and three Sentinels on loopback, each knowing the replicas and the
// other Sentinels before the test goes on (a Sentinel that does not know them yet cannot vote or
// reconfigure them, and a failover test would measure that instead).
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, inject } from 'vitest';
import { onlineReplicas } from '../../src/queue/ingest-producer.js';
import { freePort, LOOPBACK } from '../../../scripts/stack/proc.js';
import { startRedis, type RedisHandle } from '../../../scripts/stack/redis.js';
import { startSentinel, type SentinelHandle } from '../../../scripts/stack/sentinel.js';
import { eventually, startApp, type RunningApp } from './app.js';
import { createTestDb, type TestDb } from './context.js';

export const SENTINEL_MASTER = 'wa-router';

export interface SentinelStack {
  /** The master first, then the replicas. */
  readonly redis: RedisHandle[];
  readonly sentinels: SentinelHandle[];
  /** REDIS_* settings that reach the master through the Sentinels. */
  readonly env: Record<string, string>;
  stop(): Promise<void>;
}

export async function startSentinelStack(dir: string, opts: { password: string; replicas: number }): Promise<SentinelStack> {
  const { password, replicas } = opts;
  const redis: RedisHandle[] = [];
  const sentinels: SentinelHandle[] = [];
  const stop = async () => {
    await Promise.all(sentinels.map((s) => s.stop()));
    await Promise.all(redis.map((r) => r.stop()));
  };
  try {
    const master = await startRedis({ dir: path.join(dir, 'redis-0'), port: await freePort(), password });
    redis.push(master);
    for (let i = 1; i <= replicas; i++) {
      redis.push(await startRedis({ dir: path.join(dir, `redis-${i}`), port: await freePort(), password, replicaOf: { host: LOOPBACK, port: master.port } }));
    }
    const m = new Redis(master.url);
    try {
      await eventually(async () => onlineReplicas(await m.info('replication')) === replicas, { timeoutMs: 30_000, what: `${replicas} replicas online` });
    } finally {
      m.disconnect();
    }
    for (const i of [0, 1, 2]) {
      sentinels.push(await startSentinel({ dir: path.join(dir, `sentinel-${i}`), port: await freePort(), masterPort: master.port, password, downAfterMs: 2_000, failoverTimeoutMs: 5_000 }));
    }
    await eventually(async () => {
      const ok = await Promise.all(sentinels.map(async (s) => {
        const c = new Redis({ host: LOOPBACK, port: s.port, lazyConnect: true, maxRetriesPerRequest: 1 });
        try {
          await c.connect();
          const known = (await c.call('SENTINEL', 'replicas', SENTINEL_MASTER)) as unknown[];
          const others = (await c.call('SENTINEL', 'sentinels', SENTINEL_MASTER)) as unknown[];
          return known.length === replicas && others.length === 2;
        } finally {
          c.disconnect();
        }
      }));
      return ok.every(Boolean);
    }, { timeoutMs: 30_000, what: 'Sentinels to know the replicas and each other' });
  } catch (err) {
    await stop();
    throw err;
  }
  const env = { REDIS_URL: '', REDIS_SENTINELS: sentinels.map((s) => `${LOOPBACK}:${s.port}`).join(','), REDIS_MASTER_NAME: SENTINEL_MASTER, REDIS_PASSWORD: password };
  return { redis, sentinels, env, stop };
}

export interface WebOverSentinel {
  /** The stack's folder (each server's files and log below it). */
  readonly dir: string;
  /** The master first, then the replicas. */
  readonly redis: RedisHandle[];
  readonly sentinels: SentinelHandle[];
  readonly db: TestDb;
  readonly app: RunningApp;
}

/**
 * A Sentinel stack (`name` is its folder and password), one fresh database and a web process
 * reaching Redis through the Sentinels with `env`, for the enclosing file (its beforeAll and
 * afterAll are registered here); read them inside tests, once started.
 */
export function webOverSentinelForFile(name: string, opts: { replicas: number; env: Record<string, string> }): WebOverSentinel {
  const started = {} as { dir: string; redis: RedisHandle[]; sentinels: SentinelHandle[]; db: TestDb; app: RunningApp; stack: SentinelStack };
  beforeAll(async () => {
    started.dir = path.join(inject('stackDir'), `${name}-${process.pid}`);
    started.stack = await startSentinelStack(started.dir, { password: name, replicas: opts.replicas });
    started.redis = started.stack.redis;
    started.sentinels = started.stack.sentinels;
    started.db = await createTestDb();
    started.app = await startApp(started.db, 'web', { ...started.stack.env, ...opts.env });
  }, 120_000);
  afterAll(async () => {
    await started.app?.stop();
    await started.stack?.stop();
    await started.db?.drop();
  });
  return started;
}
