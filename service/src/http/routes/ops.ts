// Liveness, readiness and metrics.
import { Router } from 'express';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Registry } from '../../metrics/registry.js';
import type { Pool } from '../../store/pool.js';
import { z } from 'zod';
import { defineOperations } from '../../openapi/operation.js';

const check = z.object({ ok: z.boolean(), latencyMs: z.number().optional(), error: z.string().optional() });
export const readinessSchema = z
  .object({
    status: z.enum(['ok', 'degraded', 'unavailable', 'shutting_down']),
    role: z.string(),
    checks: z.record(z.string(), check),
    queues: z.record(z.string(), z.record(z.string(), z.number().int())),
  })
  .catchall(z.unknown())
  .meta({ id: 'Readiness', description: 'More state may follow (circuit breakers per channel, ...)' });

export const opsOperations = defineOperations('Operations', [
  { method: 'get', path: '/healthz', summary: 'Liveness', auth: 'none', responses: { 200: z.object({ status: z.literal('ok'), role: z.string() }) } },
  { method: 'get', path: '/readyz', summary: 'Readiness: Postgres, Redis, queue depths', auth: 'none', responses: { 200: readinessSchema, 503: readinessSchema } },
  { method: 'get', path: '/metrics', summary: 'Prometheus metrics', auth: 'none', responses: { 200: { description: 'Prometheus text format', contentType: 'text/plain', schema: z.string() } } },
]);

export interface OpsDeps {
  readonly role: string;
  readonly registry: Registry;
  readonly pool?: Pool | undefined;
  readonly redis?: Redis | undefined;
  readonly queues: () => readonly Queue[];
  /** More state for /readyz (circuit breakers, ...). */
  readonly extra?: () => Promise<Record<string, unknown>>;
  /** Dependencies this role cannot work without; the others are reported, not required. */
  readonly requires: readonly ('postgres' | 'redis')[];
  /** False once SIGTERM arrived: readiness fails so the load balancer drains us. */
  readonly accepting: () => boolean;
}

interface Check {
  ok: boolean;
  latencyMs?: number;
  error?: string;
}

async function timed(fn: () => Promise<unknown>, timeoutMs = 2_000): Promise<Check> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([fn(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs)))]);
    return { ok: true, latencyMs: Math.round((performance.now() - t0) * 10) / 10 };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

export function opsRoutes(deps: OpsDeps): Router {
  const r = Router();
  r.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', role: deps.role });
  });
  r.get('/readyz', async (_req, res) => {
    const checks: Record<string, Check> = {};
    if (deps.pool) checks.postgres = await timed(() => deps.pool!.query('SELECT 1'));
    if (deps.redis) checks.redis = await timed(() => deps.redis!.ping());
    const queues: Record<string, Record<string, number>> = {};
    if (checks.redis?.ok !== false) {
      await Promise.all(
        deps.queues().map(async (q) => {
          try {
            queues[q.name] = await q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'prioritized');
          } catch {
            /* reported through the redis check */
          }
        }),
      );
    }
    let extra: Record<string, unknown> = {};
    if (deps.extra && checks.redis?.ok !== false) extra = await deps.extra().catch(() => ({}));
    const required = deps.requires.every((d) => checks[d]?.ok !== false);
    const allOk = Object.values(checks).every((c) => c.ok);
    const ready = required && deps.accepting();
    res.status(ready ? 200 : 503).json({
      status: !deps.accepting() ? 'shutting_down' : !required ? 'unavailable' : allOk ? 'ok' : 'degraded',
      role: deps.role,
      checks,
      queues,
      ...extra,
    });
  });
  r.get('/metrics', async (_req, res) => {
    res.type(deps.registry.contentType).send(await deps.registry.metrics());
  });
  return r;
}
