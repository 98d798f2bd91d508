// The webhook's one durable step. Every verified body received in the same event-loop
// tick goes into one BullMQ job (one Redis round trip, one WAIT in replicated mode), and
// each request is answered only after that job is stored. Failure rejects them all.
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { fairPriorities } from './fair-priority.js';
import { JOBS, type InboundJobData, type RawWebhookEvent } from './names.js';

export interface IngestProducerOptions {
  /**
   * Wait for this many replicas to confirm the write (Redis WAIT) before acking.
   * @defaultValue 0 (AOF on the master only)
   */
  readonly replicas?: number;
  /** @defaultValue 500 */
  readonly waitTimeoutMs?: number;
  /**
   * Largest batch, in events and in body bytes; above it the tick's events split into
   * several jobs added in one round trip.
   * @defaultValue 200 events, 4 MiB
   */
  readonly maxEvents?: number;
  readonly maxBytes?: number;
  readonly attempts: number;
  readonly onBatch?: (events: number, jobs: number) => void;
  /**
   * For a queue shared by several numbers: one job per event, each with the priority of its
   * position among its key's jobs (see fair-priority.ts), the key being given to enqueue().
   * @defaultValue none (events batched, no priority)
   */
  readonly fairness?: { readonly counterKey: (key: string) => string };
}

export class EnqueueError extends Error {
  override readonly name = 'EnqueueError';
}

interface Pending {
  readonly event: RawWebhookEvent;
  readonly fairKey: string;
  readonly bytes: number;
  resolve(): void;
  reject(err: Error): void;
}

export class IngestProducer {
  private pending: Pending[] = [];
  private scheduled = false;
  private inFlight = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly queue: Queue<InboundJobData>,
    /** The connection the queue writes through: WAIT must run on the same one. */
    private readonly redis: Redis,
    private readonly opts: IngestProducerOptions,
  ) {}

  /** `fairKey`: the event's source (its number) when the producer is fair. */
  enqueue(event: RawWebhookEvent, fairKey = ''): Promise<void> {
    if (this.closed) return Promise.reject(new EnqueueError('shutting down'));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ event, fairKey, bytes: event.body.length, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Resolves when every accepted event has been answered. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.pending.length > 0 || this.inFlight.size > 0) {
      if (this.pending.length > 0 && !this.scheduled) this.flush();
      await Promise.allSettled([...this.inFlight]);
      await new Promise((r) => setImmediate(r));
    }
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    const p = this.write(batch).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  private async write(batch: Pending[]): Promise<void> {
    const maxEvents = this.opts.fairness ? 1 : (this.opts.maxEvents ?? 200);
    const maxBytes = this.opts.maxBytes ?? 4 * 1024 * 1024;
    const groups: Pending[][] = [];
    let cur: Pending[] = [];
    let bytes = 0;
    for (const p of batch) {
      if (cur.length > 0 && (cur.length >= maxEvents || bytes + p.bytes > maxBytes)) {
        groups.push(cur);
        cur = [];
        bytes = 0;
      }
      cur.push(p);
      bytes += p.bytes;
    }
    groups.push(cur);
    const jobOpts = {
      attempts: this.opts.attempts,
      backoff: { type: 'exponential', delay: 1_000 },
      // Completed jobs are already in Postgres; keep a short tail for Bull Board.
      removeOnComplete: { age: 3_600, count: 1_000 },
      // Failed jobs are the dead-letter queue: kept until replayed or removed by an operator.
      removeOnFail: false,
    } as const;
    try {
      const name = JOBS.webhookBatch;
      if (this.opts.fairness) {
        const priorities = await fairPriorities(this.redis, this.opts.fairness.counterKey, groups.map((g) => g[0]!.fairKey));
        await this.queue.addBulk(groups.map((g, i) => ({ name, data: { events: g.map((p) => p.event) }, opts: { ...jobOpts, priority: priorities[i]! } })));
      } else if (groups.length === 1) {
        await this.queue.add(name, { events: groups[0]!.map((p) => p.event) }, jobOpts);
      } else {
        await this.queue.addBulk(groups.map((g) => ({ name, data: { events: g.map((p) => p.event) }, opts: jobOpts })));
      }
      const replicas = this.opts.replicas ?? 0;
      if (replicas > 0) {
        // WAIT covers every write this connection made before it: one call for the whole tick.
        const acked = await this.redis.wait(replicas, this.opts.waitTimeoutMs ?? 500);
        if (acked < replicas) throw new EnqueueError(`only ${acked} of ${replicas} replicas confirmed the write`);
      }
      this.opts.onBatch?.(batch.length, groups.length);
      for (const p of batch) p.resolve();
    } catch (err) {
      const e = err instanceof EnqueueError ? err : new EnqueueError(err instanceof Error ? err.message : String(err));
      for (const p of batch) p.reject(e);
    }
  }
}
