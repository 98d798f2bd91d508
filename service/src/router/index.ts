// The router feature: what app.ts wires. Routes for web processes, the forwarding worker for
// worker processes, and their metrics.
import type { Router } from 'express';
import type { Config } from '../config/env.js';
import type { Logger } from '../log.js';
import { scrapeGauge, type Registry } from '../metrics/registry.js';
import type { Pool } from '../store/pool.js';
import { AreaCircuits } from './forwarding/circuit.js';
import { Forwarder } from './forwarding/forwarder.js';
import { WebhookClient } from './forwarding/http-client.js';
import { backlog } from './forwarding/outbox.js';
import { createRouterMetrics, type RouterMetrics } from './metrics.js';
import { routerRoutes } from './routes.js';

export interface RouterFeature {
  readonly metrics: RouterMetrics;
  /** Mounted under /v1 (behind auth and the JSON body parser). */
  routes(): Router;
  /** Starts delivering to areas (worker role). */
  startWorker(): void;
  stop(): Promise<void>;
}

export function createRouterFeature(deps: { config: Config; pool: Pool; log: Logger; registry: Registry }): RouterFeature {
  const { config, pool, log } = deps;
  const metrics = createRouterMetrics(deps.registry);
  const client = new WebhookClient({ timeoutMs: config.FORWARD_TIMEOUT_MS, allowPrivate: config.FORWARD_ALLOW_PRIVATE });
  const circuits = new AreaCircuits({ threshold: config.FORWARD_CIRCUIT_THRESHOLD, resetMs: config.FORWARD_CIRCUIT_RESET_MS });
  let forwarder: Forwarder | undefined;
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
    scrapeGauge(deps.registry, 'wa_router_forward_circuit', "Area circuit state in this worker: 0 closed, 1 half-open, 2 open", ['area'], (set) => {
      for (const id of circuits.known()) set({ area: String(id) }, { closed: 0, half_open: 1, open: 2 }[circuits.state(id)]);
    });
  };
  return {
    metrics,
    routes() {
      registerGauges();
      return routerRoutes({ pool, client, allowPrivate: config.FORWARD_ALLOW_PRIVATE, rotationGraceSeconds: config.SECRET_ROTATION_GRACE_SECONDS });
    },
    startWorker() {
      registerGauges();
      forwarder = new Forwarder({
        pool, log, metrics, client, circuits,
        schedule: config.FORWARD_RETRY_SCHEDULE,
        concurrency: config.FORWARD_CONCURRENCY,
        pollMs: config.FORWARD_POLL_MS,
        leaseMs: config.FORWARD_TIMEOUT_MS + 15_000,
      });
      forwarder.start();
    },
    async stop() {
      await forwarder?.stop();
      await client.close();
    },
  };
}
