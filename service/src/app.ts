// Wires config → stores → queues → HTTP and workers for one role. Builds, does not listen
// until start(), so tests can run the whole app in-process.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Config } from './config/env.js';
import { createLogger, type Logger } from './log.js';
import { createMetrics, scrapeGauge, type Metrics } from './metrics/registry.js';
import { createRedis } from './queue/redis.js';
import { QUEUES, type HistoryJobData, type InboundJobData } from './queue/names.js';
import { registerSyncGauges } from './sync/metrics.js';
import { registerQueueGauges } from './queue/metrics.js';
import { createIngestProducers, type IngestProducer } from './queue/ingest-producer.js';
import { createPool, type Pool } from './store/pool.js';
import { migrate, waitForSchema } from './store/migrate.js';
import { bootstrapChannel, resolveChannel } from './store/channels.js';
import { startInboundWorkers, type InboundWorkers } from './queue/workers/start-inbound.js';
import { errorHandler, notFound } from './http/errors.js';
import { createWebhookHandler, isWebhookPost, verifyHandshake, WEBHOOK_PATH } from './http/webhook.js';
import { opsRoutes } from './http/routes/ops.js';
import { messageRoutes } from './http/routes/messages.js';
import { deadLetterRoutes } from './http/routes/dead-letters.js';
import { outboundRoutes } from './http/routes/outbound.js';
import { channelRoutes } from './http/routes/channels.js';
import { syncRoutes } from './http/routes/sync.js';
import { OutboundQueues, replayOutbound } from './queue/outbound.js';
import { startSenders, type Senders } from './queue/senders.js';
import { CircuitBreaker } from './queue/circuit-breaker.js';
import { loadChannels, OutboxCleaner, type ChannelForSend } from './store/outbound-store.js';
import { replaySavedChannel } from './channels/unrouted-replay.js';
import { GraphClient } from './whatsapp/graph-client.js';
import { createPublisher, eventsChannel, EventHub } from './events/hub.js';
import { redisOptions } from './queue/redis.js';
import { createTokensFeature } from './tokens/index.js';
import type { Principal } from './tokens/principal.js';
import { conversationRoutes } from './http/routes/conversations.js';
import { attachUpgrade, RealtimeClients } from './http/routes/events.js';
import { createRouterFeature } from './router/index.js';
import { apiDocsRoutes } from './openapi/index.js';
import { createMediaFeature } from './media/index.js';

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
  /** The express app of a web role (its routes are checked against the API document). */
  readonly http?: express.Express;
}

export interface BuildOptions {
  readonly log?: Logger;
  /** `migrate` only waits until the schema holds this code's migrations (`migrate check`). */
  readonly migrateCheck?: boolean;
}

export async function buildApp(config: Config, role: Role, options: BuildOptions = {}): Promise<App> {
  const log = options.log ?? createLogger(config.LOG_LEVEL, { role });
  const metrics = createMetrics();
  const runsWeb = role === 'web' || role === 'all';
  const runsWorker = role === 'worker' || role === 'all';
  const closers: (() => Promise<unknown>)[] = [];
  let accepting = true;

  const pool: Pool = createPool(config, `wa-router-${role}`, (err) => log.warn({ err: err.message }, 'idle database connection lost'));
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
        const onUnreachable = (err: Error) => log.warn({ err: err.message }, 'database unreachable: starting without checking the schema');
        if (options.migrateCheck) return waitForSchema(pool, { onWait: (missing) => log.info({ missing }, 'waiting for the schema'), onUnreachable });
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
  const publish = createPublisher(redis, config.QUEUE_PREFIX, log);
  const inboundQueue = new Queue<InboundJobData>(QUEUES.inbound, { connection: redis, prefix: config.QUEUE_PREFIX });
  inboundQueue.on('error', (err) => log.warn({ err: err.message }, 'queue error'));
  closers.push(() => inboundQueue.close());
  const historyQueue = new Queue<HistoryJobData>(QUEUES.history, { connection: redis, prefix: config.QUEUE_PREFIX });
  historyQueue.on('error', (err) => log.warn({ err: err.message }, 'queue error'));
  closers.push(() => historyQueue.close());
  const outboundQueues = new OutboundQueues(redis, config.QUEUE_PREFIX, { attempts: config.OUTBOUND_ATTEMPTS, backoffMs: config.OUTBOUND_BACKOFF_MS }, (err) => log.warn({ err: err.message }, 'outbound queue error'));
  closers.push(() => outboundQueues.close());
  const router = createRouterFeature({ config, pool, redis, log, registry: metrics.registry, enqueueOutbound: (rows) => outboundQueues.enqueue(rows) });
  const media = createMediaFeature({ config, pool, redis, log, registry: metrics.registry, publish });
  closers.push(() => media.stop());
  const queues = (): Queue[] => [inboundQueue, historyQueue, media.queue, ...outboundQueues.all()];
  const circuit = new CircuitBreaker(redis, { threshold: config.CIRCUIT_THRESHOLD, resetMs: config.CIRCUIT_RESET_MS, prefix: config.QUEUE_PREFIX });
  const channelsNow = new Map<number, ChannelForSend>();
  const refreshChannels = async () => {
    for (const c of await loadChannels(pool)) {
      channelsNow.set(c.id, c);
      outboundQueues.get(c.id);
    }
  };
  const circuitStates = async () => {
    const out: Record<string, unknown> = {};
    for (const id of channelsNow.keys()) out[id] = await circuit.state(id);
    return out;
  };
  scrapeGauge(metrics.registry, 'wa_router_circuit_open', 'Channel circuit state: 0 closed, 1 half-open, 2 open', ['channel'], async (set) => {
    for (const [id, st] of Object.entries(await circuitStates())) set({ channel: id }, { closed: 0, half_open: 1, open: 2 }[(st as { state: 'closed' | 'half_open' | 'open' }).state]);
  });
  // One query per scrape for the three history gauges.
  registerSyncGauges(metrics.registry, pool);
  registerQueueGauges({ registry: metrics.registry, redis, pool, queues });

  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', true);
  app.use(opsRoutes({ role, registry: metrics.registry, pool, redis, queues, extra: async () => ({ circuits: await circuitStates() }), requires: runsWorker ? ['redis', 'postgres'] : ['redis'], accepting: () => accepting }));

  let producer: IngestProducer | undefined;
  let historyProducer: IngestProducer | undefined;
  let realtime: RealtimeClients | undefined;
  let upgradeAuth: ((req: http.IncomingMessage) => Promise<Principal | null>) | undefined;
  const webStartHooks: (() => Promise<void>)[] = [];
  if (runsWeb) {
    ({ producer, historyProducer } = createIngestProducers(config, { inbound: inboundQueue, history: historyQueue }, redis, metrics));
    app.get(WEBHOOK_PATH, verifyHandshake(config.WHATSAPP_VERIFY_TOKEN, metrics));
    app.use(apiDocsRoutes());
    const tokens = createTokensFeature({ pool, apiToken: config.API_TOKEN, publish, log });
    const v1 = express.Router();
    v1.use(tokens.identify(), router.apiLimit, tokens.require(), express.json({ limit: '1mb' }));
    const board = new ExpressAdapter();
    board.setBasePath('/admin/queues');
    const bullBoard = createBullBoard({ queues: queues().map((q) => new BullMQAdapter(q)), serverAdapter: board });
    const syncBoard = () => bullBoard.replaceQueues(queues().map((q) => new BullMQAdapter(q)));
    const outbox = new OutboxCleaner(pool, (err) => log.warn({ err: err.message }, 'outbox cleanup failed; the relay will catch up'));
    closers.push(() => outbox.flush());
    // Realtime: one subscription per web process, fanned out to SSE and WebSocket clients. The
    // token may come as ?access_token= there (browsers' EventSource and WebSocket set no headers).
    const subscriber = new Redis({ ...redisOptions(config, 'client'), lazyConnect: true, connectionName: 'wa-router:events' });
    subscriber.on('error', (err) => log.warn({ err: err.message }, 'events subscriber error'));
    const hub = new EventHub(subscriber, eventsChannel(config.QUEUE_PREFIX), log);
    closers.push(() => hub.close());
    realtime = new RealtimeClients(hub, tokens, config.EVENTS_HEARTBEAT_MS);
    const live = realtime;
    scrapeGauge(metrics.registry, 'wa_router_realtime_clients', 'Open SSE and WebSocket event streams of this process', [], async (set) => set({}, live.count));
    app.use('/v1', realtime.router([tokens.identify({ allowQuery: true }), router.apiLimit, tokens.require()]));
    app.use('/v1', media.routes([tokens.identify(), router.apiLimit, tokens.require()]));
    upgradeAuth = (req) => tokens.authorize(req).then((p) => router.upgradeLimit(req, p));
    const graph = new GraphClient({ baseUrl: config.GRAPH_API_BASE_URL, version: config.GRAPH_API_VERSION, timeoutMs: config.GRAPH_TIMEOUT_MS });
    v1.use(
      conversationRoutes({
        pool,
        publish,
        sendReadReceipt: async (channelId, wamid) => {
          if (!channelsNow.has(channelId)) await refreshChannels();
          const ch = channelsNow.get(channelId);
          if (!ch?.accessToken) return 'the channel has no access token';
          const r = await graph.markRead(ch.phoneNumberId, ch.accessToken, wamid);
          return r.ok ? null : `${r.error.code ?? r.error.httpStatus}: ${r.error.title}`;
        },
      }),
    );
    v1.use(outboundRoutes({ pool, queues: outboundQueues, outbox, log, publish, resolveChannel: (by) => resolveChannel(pool, channelsNow, by), storedMedia: media.storedMedia }));
    v1.use(
      channelRoutes({
        pool,
        onSaved: async (ch) => {
          outboundQueues.get(ch.id);
          syncBoard();
          await replaySavedChannel({ redis, queue: inboundQueue, prefix: config.QUEUE_PREFIX, attempts: config.INBOUND_ATTEMPTS, log }, ch.phoneNumberId);
        },
      }),
    );
    v1.use(messageRoutes(pool));
    v1.use(syncRoutes({ pool, historyQueue }));
    v1.use(deadLetterRoutes(queues, { beforeReplay: replayOutbound() }));
    v1.use(router.routes());
    v1.use(tokens.routes());
    app.use('/v1', v1);
    webStartHooks.push(async () => {
      await refreshChannels().catch((err: Error) => log.warn({ err: err.message }, 'channels not loaded yet'));
      syncBoard();
    });
    app.use('/admin/queues', tokens.identify(), router.apiLimit, tokens.require('admin'), board.getRouter());
  }
  app.use(notFound);
  app.use(errorHandler(log));

  const webhook = producer ? createWebhookHandler({ appSecret: config.WHATSAPP_APP_SECRET, maxBytes: config.WEBHOOK_MAX_BYTES, producer, historyProducer, metrics, log }) : undefined;
  const server = http.createServer((req, res) => {
    const arrivedAt = process.hrtime.bigint();
    if (webhook && isWebhookPost(req)) router.webhookLimit(req, res, (limited) => webhook(req, res, limited, arrivedAt));
    else app(req, res);
  });
  // Longer than common load balancer idle timeouts, so they close first and never hit a dead socket.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  if (realtime && upgradeAuth) attachUpgrade(server, realtime, '/v1/events', upgradeAuth);

  let inbound: InboundWorkers | undefined;
  let senders: Senders | undefined;
  let bootstrapTimer: NodeJS.Timeout | undefined;

  return {
    role, config, log, metrics,
    ...(runsWeb ? { http: app } : {}),
    async start() {
      if (role === 'all') {
        const applied = await migrate(pool);
        if (applied.length) log.info({ applied }, 'migrations applied');
      }
      // Best effort: a web process whose Redis is down still starts, answers 503 and reports unready.
      await Promise.race([redis.ping().catch(() => undefined), new Promise((r) => setTimeout(r, 5_000))]);
      // Listening before anything that queries Postgres: while it is away (PgBouncer queueing the
      // queries), liveness answers, readiness tells, and web acks webhooks (Redis only).
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.PORT, config.HOST, () => resolve());
      });
      log.info({ port: (server.address() as AddressInfo).port }, 'listening');
      // The bootstrap channel from the environment; retried in the background while Postgres is away.
      const tryBootstrap = () =>
        bootstrapChannel(config, pool).catch((err: Error) => {
          log.warn({ err: err.message }, 'bootstrap channel not saved yet; retrying');
          bootstrapTimer = setTimeout(tryBootstrap, 5_000);
        });
      if (runsWorker) {
        await tryBootstrap();
        inbound = startInboundWorkers({
          config, pool, redis, log, metrics, inboundQueue, historyQueue, publish,
          onStored: (result) => router.onStored(result),
        });
        senders = await startSenders({ config, pool, redis, circuit, queues: outboundQueues, log, metrics, publish, channels: channelsNow, wrapSend: media.wrapSend });
        router.startWorker();
        media.startWorker(metrics.jobs);
      } else {
        void tryBootstrap();
      }
      for (const hook of webStartHooks) await hook();
    },
    async stop() {
      accepting = false;
      clearTimeout(bootstrapTimer);
      // Event streams never end by themselves: close them so the server can.
      realtime?.closeAll();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await closed;
      await producer?.close();
      await historyProducer?.close();
      await senders?.close();
      await router.stop();
      await inbound?.close();
      for (const close of closers.reverse()) await close().catch((err: Error) => log.warn({ err: err.message }, 'error while closing'));
      log.info('stopped');
    },
    port: () => {
      const addr = server.address();
      return addr && typeof addr === 'object' ? addr.port : 0;
    },
  };
}
