// Wires config → stores → queues → HTTP and workers for one role. Builds, does not listen
// until start(), so tests can run the whole app in-process.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Queue, Worker, UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Config } from './config/env.js';
import { createLogger, type Logger } from './log.js';
import { createMetrics, scrapeGauge, type Metrics } from './metrics/registry.js';
import { createRedis } from './queue/redis.js';
import { QUEUES, type InboundJobData } from './queue/names.js';
import { IngestProducer } from './queue/ingest-producer.js';
import { createInboundProcessor } from './queue/workers/inbound.js';
import { createPool, type Pool } from './store/pool.js';
import { migrate } from './store/migrate.js';
import { ChannelResolver, upsertBootstrapChannel } from './store/channels.js';
import { bearerAuth } from './http/auth.js';
import { errorHandler, notFound } from './http/errors.js';
import { createWebhookHandler, isWebhookPost, verifyHandshake, WEBHOOK_PATH } from './http/webhook.js';
import { opsRoutes } from './http/routes/ops.js';
import { messageRoutes } from './http/routes/messages.js';
import { deadLetterRoutes } from './http/routes/dead-letters.js';

export const ROLES = ['web', 'worker', 'migrate', 'all'] as const;
export type Role = (typeof ROLES)[number];

export interface App {
  readonly role: Role;
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Listens (web, worker, all) or migrates (migrate). */
  start(): Promise<void>;
  /** Graceful: stop intake, finish in-flight requests and jobs, close connections. */
  stop(): Promise<void>;
  /** The bound port once started (0 before). */
  port(): number;
}

export interface BuildOptions {
  readonly log?: Logger;
}

export async function buildApp(config: Config, role: Role, options: BuildOptions = {}): Promise<App> {
  const log = options.log ?? createLogger(config.LOG_LEVEL, { role });
  const metrics = createMetrics();
  const runsWeb = role === 'web' || role === 'all';
  const runsWorker = role === 'worker' || role === 'all';
  const closers: (() => Promise<unknown>)[] = [];
  let accepting = true;

  const pool: Pool = createPool(config, `wa-router-${role}`);
  closers.push(() => pool.end());
  scrapeGauge(metrics.registry, 'wa_router_db_pool_connections', 'Postgres pool connections by state', ['state'], (set) => {
    set({ state: 'total' }, pool.totalCount);
    set({ state: 'idle' }, pool.idleCount);
    set({ state: 'waiting' }, pool.waitingCount);
  });

  if (role === 'migrate') {
    return {
      role, config, log, metrics,
      async start() {
        const applied = await migrate(pool);
        log.info({ applied }, applied.length ? 'migrations applied' : 'schema up to date');
        await bootstrapChannel(config, pool);
      },
      async stop() {
        await pool.end();
      },
      port: () => 0,
    };
  }

  const redis: Redis = createRedis(config, runsWeb ? 'producer' : 'client');
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  closers.push(() => redis.quit().catch(() => redis.disconnect()));
  const inboundQueue = new Queue<InboundJobData>(QUEUES.inbound, { connection: redis, prefix: config.QUEUE_PREFIX });
  inboundQueue.on('error', (err) => log.warn({ err: err.message }, 'queue error'));
  closers.push(() => inboundQueue.close());
  const queues = [inboundQueue];
  scrapeGauge(metrics.registry, 'wa_router_queue_jobs', 'Jobs per queue and state', ['queue', 'state'], async (set) => {
    for (const q of queues) {
      const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'prioritized');
      for (const [state, n] of Object.entries(counts)) set({ queue: q.name, state }, n);
    }
  });

  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', true);
  app.use(opsRoutes({ role, registry: metrics.registry, pool, redis, queues, requires: runsWorker ? ['redis', 'postgres'] : ['redis'], accepting: () => accepting }));

  let producer: IngestProducer | undefined;
  if (runsWeb) {
    producer = new IngestProducer(inboundQueue, redis, {
      attempts: config.INBOUND_ATTEMPTS,
      replicas: config.ACK_DURABILITY === 'replicated' ? config.ACK_REPLICAS : 0,
      waitTimeoutMs: config.ACK_WAIT_TIMEOUT_MS,
      onBatch: (events) => metrics.webhook.batchSize.observe(events),
    });
    app.get(WEBHOOK_PATH, verifyHandshake(config.WHATSAPP_VERIFY_TOKEN, metrics));
    const auth = bearerAuth(config.API_TOKEN);
    const v1 = express.Router();
    v1.use(auth, express.json({ limit: '1mb' }));
    v1.use(messageRoutes(pool));
    v1.use(deadLetterRoutes(queues));
    app.use('/v1', v1);
    const board = new ExpressAdapter();
    board.setBasePath('/admin/queues');
    createBullBoard({ queues: queues.map((q) => new BullMQAdapter(q)), serverAdapter: board });
    app.use('/admin/queues', auth, board.getRouter());
  }
  app.use(notFound);
  app.use(errorHandler(log));

  const webhook = producer ? createWebhookHandler({ appSecret: config.WHATSAPP_APP_SECRET, maxBytes: config.WEBHOOK_MAX_BYTES, producer, metrics, log }) : undefined;
  const server = http.createServer((req, res) => {
    if (webhook && isWebhookPost(req)) webhook(req, res);
    else app(req, res);
  });
  // Longer than common load balancer idle timeouts, so they close first and never hit a dead socket.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;

  let worker: Worker<InboundJobData> | undefined;
  let bootstrapTimer: NodeJS.Timeout | undefined;
  const startWorker = () => {
    const channels = new ChannelResolver(pool);
    const processor = createInboundProcessor({ pool, channels, queue: inboundQueue, log, metrics: metrics.inbound, attempts: config.INBOUND_ATTEMPTS });
    const w = new Worker<InboundJobData>(QUEUES.inbound, processor, {
      connection: createRedis(config, 'worker'),
      prefix: config.QUEUE_PREFIX,
      concurrency: config.WORKER_CONCURRENCY,
      // Jobs are idempotent, so a stalled job (worker killed) is simply run again.
      maxStalledCount: 10,
      lockDuration: config.WORKER_LOCK_MS,
      stalledInterval: config.WORKER_LOCK_MS,
    });
    w.on('completed', (job) => {
      metrics.jobs.processed.inc({ queue: job.queueName, result: 'completed' });
      if (job.processedOn && job.finishedOn) metrics.jobs.duration.observe({ queue: job.queueName }, (job.finishedOn - job.processedOn) / 1000);
    });
    w.on('failed', (job, err) => {
      if (!job) return;
      const final = err instanceof UnrecoverableError || err.name === 'InvalidEventError' || job.attemptsMade >= (job.opts.attempts ?? 1);
      metrics.jobs.processed.inc({ queue: job.queueName, result: final ? 'dead_lettered' : 'retried' });
      (final ? log.error.bind(log) : log.warn.bind(log))({ jobId: job.id, queue: job.queueName, attemptsMade: job.attemptsMade, err: err.message }, final ? 'job dead-lettered' : 'job failed; will retry');
    });
    w.on('error', (err) => log.warn({ err: err.message }, 'worker error'));
    return w;
  };

  return {
    role, config, log, metrics,
    async start() {
      if (role === 'all') {
        const applied = await migrate(pool);
        if (applied.length) log.info({ applied }, 'migrations applied');
      }
      // Best effort: a web process whose Redis is down still starts, answers 503 and reports unready.
      await Promise.race([redis.ping().catch(() => undefined), new Promise((r) => setTimeout(r, 5_000))]);
      if (runsWorker) {
        const tryBootstrap = () =>
          bootstrapChannel(config, pool).catch((err: Error) => {
            log.warn({ err: err.message }, 'bootstrap channel not saved yet; retrying');
            bootstrapTimer = setTimeout(tryBootstrap, 5_000);
          });
        await tryBootstrap();
        worker = startWorker();
      }
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.PORT, config.HOST, () => resolve());
      });
      log.info({ port: (server.address() as AddressInfo).port }, 'listening');
    },
    async stop() {
      accepting = false;
      clearTimeout(bootstrapTimer);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await closed;
      await producer?.close();
      if (worker) {
        await worker.close();
        await worker.disconnect().catch(() => undefined);
      }
      for (const close of closers.reverse()) await close().catch((err: Error) => log.warn({ err: err.message }, 'error while closing'));
      log.info('stopped');
    },
    port: () => {
      const addr = server.address();
      return addr && typeof addr === 'object' ? addr.port : 0;
    },
  };
}

async function bootstrapChannel(config: Config, pool: Pool): Promise<void> {
  if (!config.WHATSAPP_PHONE_NUMBER_ID || !config.WHATSAPP_ACCESS_TOKEN) return;
  await upsertBootstrapChannel(pool, {
    phoneNumberId: config.WHATSAPP_PHONE_NUMBER_ID,
    accessToken: config.WHATSAPP_ACCESS_TOKEN,
    wabaId: config.WHATSAPP_WABA_ID,
    displayPhoneNumber: config.WHATSAPP_DISPLAY_PHONE_NUMBER,
  });
}
