// The sending side of a worker process: one BullMQ worker per channel (made as channels
// appear), the outbox relay, and what happens to a send that will not be tried again.
import { UnrecoverableError, Worker } from 'bullmq';
import type { Config } from '../config/env.js';
import type { Publish } from '../events/hub.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/registry.js';
import { loadChannels, relayOutbox, type ChannelForSend } from '../store/outbound-store.js';
import type { Pool } from '../store/pool.js';
import { GraphClient } from '../whatsapp/graph-client.js';
import type { CircuitBreaker } from './circuit-breaker.js';
import { outboundQueueName, type OutboundJobData, type OutboundQueues } from './outbound.js';
import { createRedis, WORKER_RUN_RETRY_MS } from './redis.js';
import type { Redis } from 'ioredis';
import { SendGate } from './send-gate.js';
import { createOutboundProcessor, failExhausted, IN_PROCESS_WAIT_MS } from './workers/outbound.js';

export interface SendersDeps {
  readonly config: Config;
  readonly pool: Pool;
  readonly redis: Redis;
  readonly circuit: CircuitBreaker;
  readonly queues: OutboundQueues;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly publish: Publish;
  /** The channels as last loaded, shared with the rest of the process. */
  readonly channels: Map<number, ChannelForSend>;
  /** Wraps each Graph send (the media feature puts a Meta id in place of our stored media's). */
  readonly wrapSend?: (send: GraphClient['sendMessage']) => GraphClient['sendMessage'];
}

export interface Senders {
  /** Stops the relay and the channel refresh, then lets in-flight sends finish. */
  close(): Promise<void>;
}

export async function startSenders(deps: SendersDeps): Promise<Senders> {
  const { config, pool, redis, circuit, queues, log, metrics, publish, channels } = deps;
  const senders = new Map<number, Worker<OutboundJobData>>();
  let relayTimer: NodeJS.Timeout | undefined;
  let refreshTimer: NodeJS.Timeout | undefined;
  let closing = false;
  const client = new GraphClient({ baseUrl: config.GRAPH_API_BASE_URL, version: config.GRAPH_API_VERSION, timeoutMs: config.GRAPH_TIMEOUT_MS });
  const send = client.sendMessage.bind(client);
  const graph = { sendMessage: deps.wrapSend?.(send) ?? send };
  const gate = new SendGate(redis, {
    prefix: config.QUEUE_PREFIX,
    circuitResetMs: config.CIRCUIT_RESET_MS,
    pairBurst: config.PAIR_BURST,
    pairIntervalMs: config.PAIR_INTERVAL_MS,
    // A burst of a tenth of a second's worth at most: Meta's own bucket never runs dry.
    rateBurst: 8,
    unknownOutcomeGraceMs: config.OUTBOUND_UNKNOWN_OUTCOME_GRACE_MS,
    callTimeoutMs: config.GRAPH_TIMEOUT_MS,
    inProcessWaitMs: IN_PROCESS_WAIT_MS,
  });
  const ensure = async () => {
    for (const c of await loadChannels(pool)) {
      channels.set(c.id, c);
      queues.get(c.id);
    }
    for (const ch of channels.values()) {
      if (senders.has(ch.id) || closing) continue;
      const processor = createOutboundProcessor({ pool, graph, circuit, gate, log, metrics, channel: () => channels.get(ch.id), publish });
      const w = new Worker<OutboundJobData>(outboundQueueName(ch.id), processor, {
        connection: createRedis(config, 'worker'),
        prefix: config.QUEUE_PREFIX,
        concurrency: config.OUTBOUND_CONCURRENCY,
        lockDuration: config.WORKER_LOCK_MS,
        runRetryDelay: WORKER_RUN_RETRY_MS,
        stalledInterval: config.WORKER_LOCK_MS,
      });
      w.on('failed', (job, err) => {
        if (!job) return;
        // BullMQ fails a job that stalled too often with an UnrecoverableError too.
        const final = err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
        metrics.jobs.processed.inc({ queue: job.queueName, result: final ? 'dead_lettered' : 'retried' });
        log.warn({ jobId: job.id, queue: job.queueName, attemptsMade: job.attemptsMade, err: err.message }, final ? 'send dead-lettered' : 'send failed; will retry');
        if (final) void failExhausted({ pool, log, metrics, publish }, job, err, ch.id);
      });
      w.on('completed', (job) => metrics.jobs.processed.inc({ queue: job.queueName, result: 'completed' }));
      w.on('error', (err) => log.warn({ err: err.message }, 'sender error'));
      senders.set(ch.id, w);
    }
  };
  const loop = () => {
    refreshTimer = setTimeout(() => void ensure().catch((err: Error) => log.warn({ err: err.message }, 'channel refresh failed')).finally(() => closing || loop()), 5_000);
  };
  await ensure().catch((err: Error) => log.warn({ err: err.message }, 'channels not loaded yet'));
  loop();
  // The outbox relay: messages persisted but never enqueued (web crashed in between).
  const relay = () => {
    relayTimer = setTimeout(() => {
      relayOutbox(pool, 2_000, 500, (rows) => queues.enqueue(rows))
        .catch((err: Error) => log.warn({ err: err.message }, 'outbox relay failed'))
        .finally(() => closing || relay());
    }, 1_000);
  };
  relay();
  return {
    async close() {
      closing = true;
      clearTimeout(relayTimer);
      clearTimeout(refreshTimer);
      for (const w of senders.values()) {
        await w.close();
        await w.disconnect().catch(() => undefined);
      }
    },
  };
}
