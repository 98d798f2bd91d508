// The router feature: what app.ts wires. Routes for web processes, the forwarding worker for
// worker processes, and their metrics.
import type { Router } from 'express';
import type { Redis } from 'ioredis';
import type { Config } from '../config/env.js';
import { principalOf, type Principal } from '../tokens/principal.js';
import type { Logger } from '../log.js';
import { scrapeGauge, type Registry } from '../metrics/registry.js';
import type { Pool } from '../store/pool.js';
import type { InboundStoreResult } from '../store/inbound-store.js';
import { createOutbound, OutboxCleaner } from '../store/outbound-store.js';
import { MenuCache } from './menus/store.js';
import { LoopGuard } from './routing/anti-loop.js';
import { RoutingEngine, type BotMessage } from './routing/engine.js';
import { AreaCircuits, type AreaCircuit } from './forwarding/circuit.js';
import { Forwarder } from './forwarding/forwarder.js';
import { WebhookClient } from './forwarding/http-client.js';
import { backlog } from './forwarding/outbox.js';
import { ForwardWake } from './forwarding/wake.js';
import { RouteCache } from './routing/route-cache.js';
import { createRouterMetrics, type RouterMetrics } from './metrics.js';
import { routerRoutes } from './routes.js';
import { apiRateLimit, LimiterHealth, upgradeRateLimit, webhookRateLimit, type WebhookNext } from './rate-limits.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';

export interface RouterFeature {
  readonly metrics: RouterMetrics;
  /** Mounted under /v1 (behind auth and the JSON body parser). */
  routes(): Router;
  /** /v1 and /admin: failed authentication per IP (and optionally per token), shared by every replica through Redis. */
  readonly apiLimit: RequestHandler;
  /** The same limits for WebSocket upgrades (which bypass express): the principal back, or a 429 HttpError. */
  upgradeLimit(req: IncomingMessage, p: Principal | null): Promise<Principal | null>;
  /** In front of the raw webhook handler: unsigned and badly signed requests only, per IP. */
  readonly webhookLimit: (req: IncomingMessage, res: ServerResponse, next: WebhookNext) => void;
  /** Starts delivering to areas (worker role), unless FORWARD_DELIVERY is off. */
  startWorker(): void;
  /** The inbound path's hook, called once per stored batch (worker role). */
  onStored(result: Pick<InboundStoreResult, 'newMessages' | 'storedMessages' | 'statusesInserted'>): void;
  stop(): Promise<void>;
}

export interface RouterFeatureDeps {
  readonly config: Config;
  readonly pool: Pool;
  readonly redis: Redis;
  readonly log: Logger;
  readonly registry: Registry;
  /** The outbound queues' enqueue, for bot replies persisted through createOutbound. */
  readonly enqueueOutbound: (rows: { messageId: number; channelId: number; to: string }[]) => Promise<void>;
}

export function createRouterFeature(deps: RouterFeatureDeps): RouterFeature {
  const { config, pool, log } = deps;
  const metrics = createRouterMetrics(deps.registry);
  const client = new WebhookClient({ timeoutMs: config.FORWARD_TIMEOUT_MS, allowPrivate: config.FORWARD_ALLOW_PRIVATE });
  const circuits = new AreaCircuits(deps.redis, { prefix: config.QUEUE_PREFIX, threshold: config.FORWARD_CIRCUIT_THRESHOLD, resetMs: config.FORWARD_CIRCUIT_RESET_MS });
  const routes = new RouteCache(deps.redis, log, { prefix: config.QUEUE_PREFIX });
  const wakeChannel = ForwardWake.channelFor(config.QUEUE_PREFIX);
  const wake = new ForwardWake(deps.redis, wakeChannel);
  let forwarder: Forwarder | undefined;
  let unsubscribe: (() => Promise<void>) | undefined;
  const outbox = new OutboxCleaner(pool, (err) => log.warn({ err: err.message }, 'router: outbox cleanup failed; the relay will catch up'));
  // Bot replies take the API's path: persisted 'pending' with an outbox row, then enqueued,
  // so Meta's limits and error policy apply to them as to any message.
  const send = async (m: BotMessage): Promise<number> => {
    const payload = { messaging_product: 'whatsapp', recipient_type: 'individual', ...(m.toUserId ? { recipient: m.to } : { to: m.to }), type: m.type, [m.type]: m.content };
    const ref = await createOutbound(pool, { channelId: m.channelId, to: m.to, toUserId: m.toUserId, type: m.type, body: m.preview, replyToWamid: null, payload, idempotency: null });
    try {
      await deps.enqueueOutbound([{ messageId: ref.id, channelId: ref.channelId, to: m.to }]);
      outbox.done(ref.id);
    } catch (err) {
      log.warn({ messageId: ref.id, err: (err as Error).message }, 'router: enqueue failed; the outbox relay will send it');
    }
    return ref.id;
  };
  const engine = new RoutingEngine({
    pool, log, metrics, send,
    menus: new MenuCache(pool),
    routes,
    guard: new LoopGuard(deps.redis, { prefix: config.QUEUE_PREFIX, limit: config.ROUTER_LOOP_LIMIT, windowMs: config.ROUTER_LOOP_WINDOW_SECONDS * 1000 }),
  });
  let gauges = false;
  const registerGauges = () => {
    if (gauges) return;
    gauges = true;
    let cached: { at: number; rows: ReturnType<typeof backlog> } | undefined;
    const rows = () => {
      if (!cached || Date.now() - cached.at > 1_000) cached = { at: Date.now(), rows: backlog(pool) };
      return cached.rows;
    };
    scrapeGauge(deps.registry, 'wa_router_forward_backlog', 'Events waiting to be delivered, per area', ['area'], async (set) => {
      for (const r of await rows()) set({ area: String(r.areaId) }, r.pending);
    });
    scrapeGauge(deps.registry, 'wa_router_forward_oldest_seconds', 'Age of the oldest undelivered event, per area', ['area'], async (set) => {
      for (const r of await rows()) set({ area: String(r.areaId) }, r.oldestSeconds);
    });
    scrapeGauge(deps.registry, 'wa_router_forward_waiting_on_transactions', 'Undelivered events held back by a transaction still queueing into their conversation that was already running when they were queued, per area (up to FORWARD_ORDER_MAX_WAIT_MS)', ['area'], async (set) => {
      for (const r of await rows()) set({ area: String(r.areaId) }, r.waitingOnTransactions);
    });
    scrapeGauge(deps.registry, 'wa_router_forward_circuit', 'Area circuit state, shared by every worker: 0 closed, 1 half-open, 2 open (every area; 0 when its last delivery succeeded)', ['area'], async (set) => {
      const states = await circuits.snapshot().catch(() => new Map<number, AreaCircuit>());
      for (const r of await rows()) if (!states.has(r.areaId)) set({ area: String(r.areaId) }, 0);
      for (const [id, c] of states) set({ area: String(id) }, { closed: 0, half_open: 1, open: 2 }[c.state]);
    });
  };
  const limits = { redis: deps.redis, prefix: config.QUEUE_PREFIX, perMinute: config.RATE_LIMIT_PER_MINUTE, health: new LimiterHealth(log, metrics.unlimited) };
  // The per-token bucket is the principal's, however its token was spelled or carried.
  const principalKey = (p: Principal) => (p.tokenId === null ? 'bootstrap' : `token:${p.tokenId}`);
  const apiLimits = { ...limits, perTokenPerMinute: config.RATE_LIMIT_PER_TOKEN_PER_MINUTE, principal: (req: IncomingMessage) => { const p = principalOf(req); return p && principalKey(p); } };
  const upgradeLimit = upgradeRateLimit(apiLimits);
  return {
    metrics,
    apiLimit: apiRateLimit(apiLimits),
    upgradeLimit: async (req, p) => {
      await upgradeLimit(req, p && principalKey(p));
      return p;
    },
    webhookLimit: webhookRateLimit(limits),
    routes() {
      registerGauges();
      return routerRoutes({ pool, routes, wake: () => wake.publish(), client, allowPrivate: config.FORWARD_ALLOW_PRIVATE, rotationGraceSeconds: config.SECRET_ROTATION_GRACE_SECONDS });
    },
    startWorker() {
      registerGauges();
      if (!config.FORWARD_DELIVERY) return;
      forwarder = new Forwarder({
        pool, log, metrics, client, circuits,
        schedule: config.FORWARD_RETRY_SCHEDULE,
        concurrency: config.FORWARD_CONCURRENCY,
        pollMs: config.FORWARD_POLL_MS,
        leaseMs: config.FORWARD_TIMEOUT_MS + 15_000,
        settleMs: config.FORWARD_ORDER_SETTLE_MS,
        maxOrderWaitMs: config.FORWARD_ORDER_MAX_WAIT_MS,
      });
      const local = forwarder;
      unsubscribe = ForwardWake.subscribe(deps.redis, wakeChannel, log, () => local.wake());
      forwarder.start();
    },
    onStored: (result) => {
      engine.onStored(result);
      if (result.newMessages.length === 0 && result.statusesInserted === 0) return;
      // This worker's forwarder at once; the others through Redis.
      forwarder?.wake();
      wake.publish();
    },
    async stop() {
      await unsubscribe?.();
      await forwarder?.stop();
      await outbox.flush();
      await client.close();
    },
  };
}
