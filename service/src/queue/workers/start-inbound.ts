// The worker role's inbound side: the history worker, the saved-channel follower and the inbound
// worker with its metrics and logs, started together and closed in reverse.
import { Worker, UnrecoverableError, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../../config/env.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics/registry.js';
import type { Pool } from '../../store/pool.js';
import { ChannelResolver } from '../../store/channels.js';
import { followSavedChannels } from '../../channels/unrouted-replay.js';
import { createRedis, redisOptions, WORKER_RUN_RETRY_MS } from '../redis.js';
import { QUEUES, type HistoryJobData, type InboundJobData } from '../names.js';
import { historySequenceKey } from '../fair-priority.js';
import { handleCoexistence, startHistoryWorker, type CoexistenceDeps } from './coexistence.js';
import { createInboundProcessor } from './inbound.js';
import type { InboundStoreResult } from '../../store/inbound-store.js';
import type { Publish } from '../../events/hub.js';

export interface InboundWorkersDeps {
  readonly config: Config;
  readonly pool: Pool;
  readonly redis: Redis;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly inboundQueue: Queue<InboundJobData>;
  readonly historyQueue: Queue<HistoryJobData>;
  /** Realtime events of what the inbound and history workers store. */
  readonly publish: Publish;
  /** Called once per stored inbound job, after it committed. */
  readonly onStored: (result: InboundStoreResult) => void;
}

export interface InboundWorkers {
  close(): Promise<void>;
}

export function startInboundWorkers(d: InboundWorkersDeps): InboundWorkers {
  const { config, pool, log, metrics } = d;
  const channels = new ChannelResolver(pool);
  const coex: CoexistenceDeps = {
    pool, channels, historyQueue: d.historyQueue, inboundQueue: d.inboundQueue, redis: d.redis, log, metrics: metrics.history, attempts: config.INBOUND_ATTEMPTS,
    sequenceKey: (phoneNumberId) => historySequenceKey(config.QUEUE_PREFIX, phoneNumberId),
    publish: d.publish,
  };
  const historyWorker = startHistoryWorker(coex, { connection: createRedis(config, 'worker'), prefix: config.QUEUE_PREFIX, concurrency: config.HISTORY_CONCURRENCY, lockMs: config.WORKER_LOCK_MS, jobs: metrics.jobs });
  const stopFollowing = followSavedChannels({ redisOptions: redisOptions(config, 'client'), resolver: channels, pool, queue: d.inboundQueue, prefix: config.QUEUE_PREFIX, attempts: config.INBOUND_ATTEMPTS, log });
  const processor = createInboundProcessor({
    pool, channels, queue: d.inboundQueue, log, metrics: metrics.inbound, attempts: config.INBOUND_ATTEMPTS,
    coexistence: (changes, delivery) => handleCoexistence(coex, changes, { delivery }),
    onStored: d.onStored,
    publish: d.publish,
  });
  const worker = new Worker<InboundJobData>(QUEUES.inbound, processor, {
    connection: createRedis(config, 'worker'),
    prefix: config.QUEUE_PREFIX,
    concurrency: config.WORKER_CONCURRENCY,
    // Jobs are idempotent, so a stalled job (worker killed) is simply run again.
    maxStalledCount: 10,
    lockDuration: config.WORKER_LOCK_MS,
    runRetryDelay: WORKER_RUN_RETRY_MS,
    stalledInterval: config.WORKER_LOCK_MS,
  });
  worker.on('completed', (job) => {
    metrics.jobs.processed.inc({ queue: job.queueName, result: 'completed' });
    if (job.processedOn && job.finishedOn) metrics.jobs.duration.observe({ queue: job.queueName }, (job.finishedOn - job.processedOn) / 1000);
  });
  worker.on('failed', (job, err) => {
    if (!job) return;
    const final = err instanceof UnrecoverableError || err.name === 'InvalidEventError' || job.attemptsMade >= (job.opts.attempts ?? 1);
    metrics.jobs.processed.inc({ queue: job.queueName, result: final ? 'dead_lettered' : 'retried' });
    (final ? log.error.bind(log) : log.warn.bind(log))({ jobId: job.id, queue: job.queueName, attemptsMade: job.attemptsMade, err: err.message }, final ? 'job dead-lettered' : 'job failed; will retry');
  });
  worker.on('error', (err) => log.warn({ err: err.message }, 'worker error'));
  return {
    async close() {
      for (const w of [worker, historyWorker]) {
        await w.close();
        await w.disconnect().catch(() => undefined);
      }
      await stopFollowing();
    },
  };
}
