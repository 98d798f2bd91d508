// The forwarding worker: keeps up to `concurrency` deliveries in flight, claiming due events
// from the outbox as slots free up, and records outcomes in batches. Order per conversation
// comes from the outbox (only a conversation's head event is claimable); isolation between
// areas from a small per-area in-flight cap, a budget for failing areas (together at most half
// the slots, so hanging receivers never take the slots healthy areas need) and the circuit
// breaker (a half-open area gets one probe, not a batch).
import type { Logger } from '../../log.js';
import type { Pool } from '../../store/pool.js';
import type { RouterMetrics } from '../metrics.js';
import { signatureHeader } from '../signing.js';
import type { AreaCircuits } from './circuit.js';
import type { DeliveryResult, WebhookClient } from './http-client.js';
import { bodiesFor, claimDue, disableArea, recordOutcomes, release, type ClaimedEvent, type Outcome } from './outbox.js';

export interface ForwarderOptions {
  readonly pool: Pool;
  readonly log: Logger;
  readonly metrics: RouterMetrics;
  readonly client: WebhookClient;
  readonly circuits: AreaCircuits;
  /** Seconds before each retry; exhausted → dead-letter. */
  readonly schedule: readonly number[];
  /** @defaultValue 200 */
  readonly concurrency: number;
  /** Deliveries in flight to one area at most. @defaultValue a tenth of `concurrency` (at least 1) */
  readonly perAreaConcurrency?: number;
  /** @defaultValue 50 */
  readonly pollMs: number;
  /** How long a claim is ours; must exceed the delivery timeout. */
  readonly leaseMs: number;
  /** How long a stored event waits for earlier ones of its conversation still being stored. @defaultValue 30 */
  readonly settleMs: number;
}

interface AreaTarget {
  readonly url: string;
  readonly secrets: string[];
}

/** The delay before attempt `attempt + 1`, with ±10% jitter so retries of a burst spread out. */
export function retryDelaySeconds(schedule: readonly number[], attempt: number, retryAfter: number | null): number | null {
  if (attempt > schedule.length) return null;
  if (retryAfter !== null) return Math.min(retryAfter, 86_400);
  const base = schedule[attempt - 1]!;
  return base * (0.9 + Math.random() * 0.2);
}

export function signedHeaders(webhookId: string, secrets: readonly string[], body: string, now = Date.now()): Record<string, string> {
  const ts = Math.floor(now / 1000);
  return {
    'content-type': 'application/json',
    'user-agent': 'wa-router',
    'webhook-id': webhookId,
    'webhook-timestamp': String(ts),
    'webhook-signature': signatureHeader(secrets, webhookId, ts, body),
  };
}

export class Forwarder {
  private inflight = 0;
  private readonly perArea = new Map<number, number>();
  private pendingOutcomes: Outcome[] = [];
  private flushing: Promise<void> | undefined;
  private stopping = false;
  private running: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private targets: { at: number; map: Map<number, AreaTarget> } = { at: 0, map: new Map() };

  constructor(private readonly o: ForwarderOptions) {}

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.running;
    while (this.inflight > 0 || this.pendingOutcomes.length > 0 || this.flushing) {
      await (this.flushing ?? new Promise((r) => setTimeout(r, 10)));
      if (!this.flushing && this.pendingOutcomes.length > 0) this.flush();
    }
  }

  private capOf(areaId: number): number {
    if (this.o.circuits.state(areaId) === 'half_open') return 1;
    return this.o.perAreaConcurrency ?? Math.max(1, Math.floor(this.o.concurrency / 10));
  }

  /** In flight to areas whose last deliveries failed: together they may hold half the slots. */
  private failingInflight(): number {
    let n = 0;
    for (const [id, k] of this.perArea) if (this.o.circuits.failing(id)) n += k;
    return n;
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      let claimed = 0;
      try {
        claimed = await this.claim();
      } catch (err) {
        this.o.log.warn({ err: (err as Error).message }, 'forwarding: claim failed; retrying');
      }
      if (claimed === 0 && !this.stopping) await this.sleep(this.o.pollMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }

  private async claim(): Promise<number> {
    const free = this.o.concurrency - this.inflight;
    if (free <= 0) return 0;
    const failingBudget = Math.max(1, Math.floor(this.o.concurrency / 2));
    let failing = this.failingInflight();
    const full = [...this.perArea].filter(([id, n]) => n >= this.capOf(id)).map(([id]) => id);
    const skip = [...this.o.circuits.open(), ...full, ...(failing >= failingBudget ? this.o.circuits.failingAreas() : [])];
    const events = await claimDue(this.o.pool, free, this.o.leaseMs, skip, this.o.settleMs);
    if (events.length === 0) return 0;
    // One claim may take more of an area than its cap: the surplus goes straight back.
    const taken: ClaimedEvent[] = [];
    const surplus: number[] = [];
    const counts = new Map(this.perArea);
    for (const e of events) {
      const n = counts.get(e.areaId) ?? 0;
      const isFailing = this.o.circuits.failing(e.areaId);
      if (n >= this.capOf(e.areaId) || (isFailing && failing >= failingBudget)) surplus.push(e.id);
      else {
        counts.set(e.areaId, n + 1);
        if (isFailing) failing++;
        taken.push(e);
      }
    }
    await release(this.o.pool, surplus);
    for (const e of taken) this.track(e.areaId, 1);
    try {
      const [bodies, targets] = await Promise.all([bodiesFor(this.o.pool, taken), this.areaTargets(taken.map((e) => e.areaId))]);
      for (const e of taken) void this.deliver(e, bodies.get(e.id)!, targets.get(e.areaId));
    } catch (err) {
      for (const e of taken) this.track(e.areaId, -1);
      await release(this.o.pool, taken.map((e) => e.id)).catch(() => undefined);
      throw err;
    }
    return taken.length;
  }

  private track(areaId: number, delta: number): void {
    this.inflight += delta;
    const n = (this.perArea.get(areaId) ?? 0) + delta;
    if (n <= 0) this.perArea.delete(areaId);
    else this.perArea.set(areaId, n);
  }

  /** Areas' URLs and live secrets, cached for a second (edits and rotations show up within it). */
  private async areaTargets(ids: number[]): Promise<Map<number, AreaTarget>> {
    const now = Date.now();
    if (now - this.targets.at > 1_000) this.targets = { at: now, map: new Map() };
    const missing = [...new Set(ids)].filter((id) => !this.targets.map.has(id));
    if (missing.length > 0) {
      const { rows } = await this.o.pool.query<{ id: number; webhook_url: string; secrets: string[] | null }>(
        `SELECT a.id, a.webhook_url,
                (SELECT array_agg(s.secret ORDER BY s.id DESC) FROM area_secrets s WHERE s.area_id = a.id AND (s.expires_at IS NULL OR s.expires_at > now())) AS secrets
         FROM areas a WHERE a.id = ANY ($1::bigint[])`,
        [missing],
      );
      for (const r of rows) this.targets.map.set(r.id, { url: r.webhook_url, secrets: r.secrets ?? [] });
    }
    return this.targets.map;
  }

  private async deliver(e: ClaimedEvent, body: string, target: AreaTarget | undefined): Promise<void> {
    const attempt = e.attempts + 1;
    let result: DeliveryResult;
    if (!target) result = { statusCode: null, latencyMs: 0, error: 'area not found', response: null, retryAfterSeconds: null };
    else result = await this.o.client.post(target.url, signedHeaders(e.webhookId, target.secrets, body), body);
    const area = String(e.areaId);
    this.o.metrics.latency.observe({ area }, result.latencyMs / 1000);
    const ok = result.statusCode !== null && result.statusCode >= 200 && result.statusCode < 300;
    let status: Outcome['status'];
    let next = new Date();
    let error = result.error ?? (ok ? null : `HTTP ${result.statusCode}`);
    if (ok) {
      status = 'succeeded';
      this.o.circuits.success(e.areaId);
      this.o.metrics.deliveries.inc({ area, result: 'success' });
    } else if (result.statusCode === 410) {
      status = 'dead';
      error = 'the receiver answered 410 Gone: area disabled';
      this.o.metrics.deliveries.inc({ area, result: 'gone' });
      await disableArea(this.o.pool, e.areaId, 'the webhook answered 410 Gone').catch((err: Error) => this.o.log.warn({ err: err.message }, 'forwarding: area not disabled'));
    } else {
      if (this.o.circuits.failure(e.areaId)) this.o.log.warn({ areaId: e.areaId }, 'forwarding: circuit opened for an area');
      const honoursRetryAfter = result.statusCode === 429 || result.statusCode === 503;
      const delay = retryDelaySeconds(this.o.schedule, attempt, honoursRetryAfter ? result.retryAfterSeconds : null);
      if (delay === null) {
        status = 'dead';
        this.o.metrics.deliveries.inc({ area, result: 'dead' });
        this.o.log.warn({ areaId: e.areaId, webhookId: e.webhookId, attempts: attempt, error }, 'forwarding: delivery dead-lettered');
      } else {
        status = 'pending';
        next = new Date(Date.now() + delay * 1000);
        this.o.metrics.deliveries.inc({ area, result: 'retry' });
      }
    }
    this.pendingOutcomes.push({ id: e.id, areaId: e.areaId, body, status, nextAttemptAt: next, statusCode: result.statusCode, latencyMs: result.latencyMs, error, response: result.response });
    this.flush();
  }

  /** One statement for the outcomes that arrived meanwhile; the slots free once they are recorded. */
  private flush(): void {
    if (this.flushing || this.pendingOutcomes.length === 0) return;
    this.flushing = (async () => {
      await new Promise((r) => setImmediate(r));
      const batch = this.pendingOutcomes;
      this.pendingOutcomes = [];
      for (let attempt = 0; ; attempt++) {
        try {
          await recordOutcomes(this.o.pool, batch);
          break;
        } catch (err) {
          // Unrecorded, the events are claimed again when their lease ends: at least once holds.
          if (attempt >= 2 || this.stopping) {
            this.o.log.warn({ err: (err as Error).message, events: batch.length }, 'forwarding: outcomes not recorded; they will be delivered again');
            break;
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      for (const o of batch) this.track(o.areaId, -1);
    })().finally(() => {
      this.flushing = undefined;
      this.wake?.();
      if (this.pendingOutcomes.length > 0) this.flush();
    });
  }
}
