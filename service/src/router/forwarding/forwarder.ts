// The forwarding worker: keeps up to `concurrency` queues in delivery at once, each a run of
// consecutive events of one (conversation, area) delivered one after the other (order), claimed
// together in one statement as slots free up; outcomes are recorded in batches. It claims when
// told that events were stored (wake()), when a slot frees, when a retry falls due, and on a
// slow poll as a safety net. Isolation between areas: a per-area cap of queues in delivery, a
// budget for failing areas (together at most half the slots, so hanging receivers never take the
// slots healthy areas need), and the circuit breaker shared through Redis (a half-open area gets
// one probe among all workers, not a batch).
import type { Logger } from '../../log.js';
import type { Pool } from '../../store/pool.js';
import type { RouterMetrics } from '../metrics.js';
import { signatureHeader } from '../signing.js';
import type { AreaCircuit, AreaCircuits } from './circuit.js';
import type { DeliveryResult, WebhookClient } from './http-client.js';
import { bodiesFor, claimRuns, continueRun, disableArea, recordOutcomes, release, type ClaimedEvent, type Outcome } from './outbox.js';

export interface ForwarderOptions {
  readonly pool: Pool;
  readonly log: Logger;
  readonly metrics: RouterMetrics;
  readonly client: WebhookClient;
  readonly circuits: AreaCircuits;
  /** Seconds before each retry; exhausted → dead-letter. */
  readonly schedule: readonly number[];
  /** Queues in delivery at once (each has one request in flight at most). @defaultValue 200 */
  readonly concurrency: number;
  /** Queues of one area in delivery at once. @defaultValue a tenth of `concurrency` (at least 1) */
  readonly perAreaConcurrency?: number;
  /** Events of one queue claimed together and delivered one after the other. @defaultValue 50 */
  readonly runLength?: number;
  /**
   * A run goes on past this long since its claim (or its last check) only after checking that
   * its head still holds the lease the run was given, that no store is open in its conversation
   * (its order lock is free) and that no event stored meanwhile sorts before its rest (an older
   * message redelivered late): either ends the run and the next claim takes the queue in order.
   * So only an event whose store began after the last check can be overtaken, by the deliveries
   * until the next check: this long at most, plus the answer then in flight. @defaultValue 500
   */
  readonly runWindowMs?: number;
  /** The safety-net poll (a worker killed mid-run, a missed wake-up). @defaultValue 500 */
  readonly pollMs: number;
  /**
   * How long a claim is ours, renewed at each check of a run past its window: must exceed the
   * delivery timeout plus the run window (a run checks again after one more answer at most).
   */
  readonly leaseMs: number;
  /** How long a stored event waits for earlier ones of its conversation still being stored. @defaultValue 30 */
  readonly settleMs: number;
  /** How long at most a stored event waits for the transactions open when it was stored. @defaultValue 10000 */
  readonly maxOrderWaitMs?: number;
}

/** Wake-ups this close together share one claim (a store's events wait this much longer at most). */
const WAKE_GRID_MS = 10;
/**
 * A run is claimed about this many windows long at the pace its area's receiver last showed: the
 * slots of an area at its cap still pass from queue to queue about every second, while a run
 * that takes longer goes on rather than leaving its rest to be claimed again.
 */
const SLICE_WINDOWS = 2;
/** Wake-ups kept at most; the latest are dropped beyond it (the poll covers them). */
const MAX_DUES = 256;

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

/**
 * One queue's turn, recorded in one go when it ends: until then its head stays pending and
 * leased, which keeps every other worker off the whole queue.
 */
interface Run {
  readonly areaId: number;
  outcomes: Outcome[];
  /** The head, when the run ended before attempting it (stopping): its lease is given back. */
  released: number[];
}

export class Forwarder {
  private inflight = 0;
  private readonly perArea = new Map<number, number>();
  private finished: Run[] = [];
  private flushing: Promise<void> | undefined;
  private stopping = false;
  private running: Promise<void> | undefined;
  private wakeNow: (() => void) | undefined;
  private woken = false;
  private wakeTimer: NodeJS.Timeout | undefined;
  /**
   * When claims are due (epoch ms, ascending, on a WAKE_GRID_MS grid): each stored batch's settle
   * time, each retry's. One timer, armed for the first: a store made while it was armed keeps its
   * own due time instead of waiting for whatever store came after the timer fired (which made
   * an event wait for up to two settle times: commit → receiver p50 39 ms, p95 65 ms at 500/s).
   */
  private dues: number[] = [];
  private circuits = new Map<number, AreaCircuit>();
  /**
   * Events a run of the area delivered in its last window, for areas whose
   * receivers are slower than a full run per window: claims take SLICE_WINDOWS of them.
   */
  private readonly pace = new Map<number, number>();
  private targets: { at: number; map: Map<number, AreaTarget> } = { at: 0, map: new Map() };

  constructor(private readonly o: ForwarderOptions) {}

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.wakeTimer);
    this.wakeNow?.();
    await this.running;
    while (this.inflight > 0 || this.finished.length > 0 || this.flushing) {
      await (this.flushing ?? new Promise((r) => setTimeout(r, 10)));
      if (!this.flushing && this.finished.length > 0) this.flush();
    }
  }

  /** Events were stored (or fall due) `inMs` from now: claim then, not at the next poll. */
  wake(inMs = this.o.settleMs): void {
    if (this.stopping) return;
    // Rounded up: never before the events settle; stores within one grid step share a claim.
    const at = Math.ceil((Date.now() + inMs) / WAKE_GRID_MS) * WAKE_GRID_MS;
    let i = this.dues.length;
    while (i > 0 && this.dues[i - 1]! > at) i--;
    if (this.dues[i - 1] === at) return;
    if (this.dues.length >= MAX_DUES) {
      // The latest go first: until then the poll and the earlier claims take their events.
      if (i === this.dues.length) return;
      this.dues.pop();
    }
    this.dues.splice(i, 0, at);
    if (i === 0) this.armWake();
  }

  private armWake(): void {
    clearTimeout(this.wakeTimer);
    const next = this.dues[0];
    if (next === undefined || this.stopping) return;
    this.wakeTimer = setTimeout(() => {
      // A timer may fire a little early: what is due within a millisecond goes now.
      const now = Date.now() + 1;
      while (this.dues.length > 0 && this.dues[0]! <= now) this.dues.shift();
      this.signal();
      this.armWake();
    }, Math.max(0, next - Date.now()));
  }

  private signal(): void {
    this.woken = true;
    this.wakeNow?.();
  }

  private get cap(): number {
    return this.o.perAreaConcurrency ?? Math.max(1, Math.floor(this.o.concurrency / 10));
  }

  private get maxRun(): number {
    return this.o.runLength ?? 50;
  }

  private get window(): number {
    return this.o.runWindowMs ?? 500;
  }

  /** A run delivered \`n\` events in a window (\`past\`: it went past the window; else all of it within its first). */
  private paced(areaId: number, n: number, past: boolean): void {
    if (past) this.pace.set(areaId, Math.max(1, n));
    else if (this.pace.has(areaId) && n >= this.pace.get(areaId)! * SLICE_WINDOWS) {
      // A whole fitted run within one window: the receiver got faster, runs grow back.
      if (n * 2 >= this.maxRun) this.pace.delete(areaId);
      else this.pace.set(areaId, n);
    }
  }

  private failing(areaId: number): boolean {
    return this.circuits.has(areaId);
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      this.woken = false;
      let claimed = 0;
      // Every slot in delivery, or nothing taken while some area was held back (its cap, its
      // circuit, the failing budget): the count says so rather than 'empty' (which would read as
      // nothing left to deliver, while a saturated area's backlog may be due).
      if (this.inflight >= this.o.concurrency) this.o.metrics.claims.inc({ result: 'full' });
      else try {
        const round = await this.claim();
        claimed = round.taken;
        this.o.metrics.claims.inc({ result: claimed > 0 ? 'taken' : round.heldBack ? 'capped' : 'empty' });
      } catch (err) {
        this.o.metrics.claims.inc({ result: 'failed' });
        this.o.log.warn({ err: (err as Error).message }, 'forwarding: claim failed; retrying');
      }
      if (claimed === 0 && !this.woken && !this.stopping) await this.sleep(this.o.pollMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (by: 'wake' | 'poll') => {
        clearTimeout(t);
        this.wakeNow = undefined;
        this.o.metrics.claimWakeups.inc({ by });
        resolve();
      };
      const t = setTimeout(() => done('poll'), ms);
      this.wakeNow = () => done('wake');
    });
  }

  /** The shared circuit states; the last known ones while Redis cannot tell. */
  private async refreshCircuits(): Promise<void> {
    try {
      this.circuits = await this.o.circuits.snapshot();
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'forwarding: circuit states unavailable; using the last known');
    }
  }

  /** Queues taken, and whether some area was left out of the claim (held back) or given back. */
  private async claim(): Promise<{ taken: number; heldBack: boolean }> {
    const free = this.o.concurrency - this.inflight;
    await this.refreshCircuits();
    const failingBudget = Math.max(1, Math.floor(this.o.concurrency / 2));
    let failingInflight = 0;
    for (const [id, n] of this.perArea) if (this.failing(id)) failingInflight += n;
    const skip: number[] = [];
    const lengths = new Map<number, number>();
    for (const [id, n] of this.pace) lengths.set(id, Math.min(this.maxRun, n * SLICE_WINDOWS));
    const caps = new Map<number, number>();
    for (const [id, c] of this.circuits) {
      if (c.state === 'open' || (c.state === 'half_open' && (this.perArea.get(id) ?? 0) > 0)) skip.push(id);
      else if (c.state === 'half_open') {
        // One probe among every worker: whoever takes it delivers one event; the others wait.
        const probe = await this.o.circuits.tryProbe(id, this.o.leaseMs).catch(() => false);
        if (probe) {
          caps.set(id, 1);
          lengths.set(id, 1);
        } else skip.push(id);
      } else if (failingInflight >= failingBudget) skip.push(id);
      else {
        caps.set(id, Math.max(0, Math.min(this.cap - (this.perArea.get(id) ?? 0), failingBudget - failingInflight)));
        lengths.set(id, 1);
      }
    }
    for (const [id, n] of this.perArea) if (!caps.has(id) && !skip.includes(id)) caps.set(id, Math.max(0, this.cap - n));
    for (const [id, n] of caps) if (n === 0) skip.push(id);
    const runs = await claimRuns(this.o.pool, {
      queues: free, runLength: this.maxRun, leaseMs: this.o.leaseMs, settleMs: this.o.settleMs, maxOrderWaitMs: this.o.maxOrderWaitMs ?? 10_000,
      skipAreas: skip, areaCaps: caps, defaultCap: this.cap, runLengths: lengths,
    });
    if (runs.length === 0) return { taken: 0, heldBack: skip.length > 0 };
    const claimedAt = Date.now();
    // Several failing areas share one budget: what one claim took beyond it goes straight back.
    const taken: ClaimedEvent[][] = [];
    const surplus: number[] = [];
    for (const run of runs) {
      const areaId = run[0]!.areaId;
      if (this.failing(areaId) && this.circuits.get(areaId)!.state === 'closed' && failingInflight >= failingBudget) surplus.push(run[0]!.id);
      else {
        if (this.failing(areaId)) failingInflight++;
        taken.push(run);
      }
    }
    await release(this.o.pool, surplus);
    for (const run of taken) this.track(run[0]!.areaId, 1);
    this.o.metrics.claimedEvents.inc(taken.reduce((n, run) => n + run.length, 0));
    try {
      const events = taken.flat();
      const [bodies, targets] = await Promise.all([bodiesFor(this.o.pool, events), this.areaTargets(events.map((e) => e.areaId))]);
      for (const run of taken) void this.deliverRun(run, bodies, targets.get(run[0]!.areaId), claimedAt);
    } catch (err) {
      for (const run of taken) this.track(run[0]!.areaId, -1);
      await release(this.o.pool, taken.map((run) => run[0]!.id)).catch(() => undefined);
      throw err;
    }
    return { taken: taken.length, heldBack: skip.length > 0 || surplus.length > 0 };
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

  /** Delivers a run in order; the first event that does not succeed ends it, the rest stay pending behind it. */
  private async deliverRun(run: readonly ClaimedEvent[], bodies: ReadonlyMap<number, string>, target: AreaTarget | undefined, claimedAt: number): Promise<void> {
    const done: Run = { areaId: run[0]!.areaId, outcomes: [], released: [] };
    let checkedAt = claimedAt;
    let checkedBefore = 0;
    // The head's lease this run holds: each check proves it is still there and renews it.
    let lease = run[0]!.lease;
    try {
      for (const [i, e] of run.entries()) {
        if (this.stopping) {
          if (i === 0) done.released = [e.id];
          break;
        }
        // Past the window the run goes on with the rest it holds (read and built once) when
        // nothing sorts before it now; otherwise it ends and the next claim takes the queue.
        if (i > 0 && Date.now() - checkedAt > this.window) {
          this.paced(done.areaId, i - checkedBefore, true);
          // Postgres unavailable: the run ends, what it delivered is recorded (or leased again).
          const renewed = lease === null ? null : await continueRun(this.o.pool, run, this.o.leaseMs, lease).catch(() => null);
          this.o.metrics.runChecks.inc({ result: renewed !== null ? 'continued' : 'ended' });
          if (renewed === null) break;
          lease = renewed;
          checkedAt = Date.now();
          checkedBefore = i;
        }
        const outcome = await this.deliver(e, bodies.get(e.id)!, target);
        done.outcomes.push(outcome);
        if (outcome.status !== 'succeeded') break;
        if (i === run.length - 1 && checkedAt === claimedAt) this.paced(done.areaId, run.length, false);
      }
    } catch (err) {
      // Unexpected (a bug, not a receiver's answer): the unrecorded events' leases run out and they go again.
      this.o.log.error({ err: (err as Error).message }, 'forwarding: run failed');
    }
    this.finished.push(done);
    this.flush();
  }

  private async deliver(e: ClaimedEvent, body: string, target: AreaTarget | undefined): Promise<Outcome> {
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
      if (this.failing(e.areaId)) {
        this.circuits.delete(e.areaId);
        await this.o.circuits.success(e.areaId).catch((err: Error) => this.o.log.warn({ err: err.message }, 'forwarding: circuit not closed'));
      }
      this.o.metrics.deliveries.inc({ area, result: 'success' });
    } else if (result.statusCode === 410) {
      status = 'dead';
      error = 'the receiver answered 410 Gone: area disabled';
      this.o.metrics.deliveries.inc({ area, result: 'gone' });
      await disableArea(this.o.pool, e.areaId, 'the webhook answered 410 Gone').catch((err: Error) => this.o.log.warn({ err: err.message }, 'forwarding: area not disabled'));
    } else {
      if (!this.failing(e.areaId)) this.circuits.set(e.areaId, { state: 'closed', failures: 1 });
      const opened = await this.o.circuits.failure(e.areaId).catch((err: Error) => {
        this.o.log.warn({ err: err.message }, 'forwarding: circuit failure not counted');
        return false;
      });
      if (opened) this.o.log.warn({ areaId: e.areaId }, 'forwarding: circuit opened for an area');
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
        this.wake(delay * 1000);
      }
    }
    return { id: e.id, areaId: e.areaId, body: status === 'succeeded' ? null : body, status, nextAttemptAt: next, statusCode: result.statusCode, latencyMs: result.latencyMs, error, response: result.response };
  }

  /** One statement for the runs that ended meanwhile; their slots free once they are recorded. */
  private flush(): void {
    if (this.flushing || this.finished.length === 0) return;
    this.flushing = (async () => {
      await new Promise((r) => setImmediate(r));
      const batch = this.finished;
      this.finished = [];
      for (let attempt = 0; ; attempt++) {
        try {
          await recordOutcomes(this.o.pool, batch.flatMap((r) => r.outcomes), batch.flatMap((r) => r.released));
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
      for (const r of batch) this.track(r.areaId, -1);
    })().finally(() => {
      this.flushing = undefined;
      this.signal();
      if (this.finished.length > 0) this.flush();
    });
  }
}
