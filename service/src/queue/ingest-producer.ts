// The webhook's one durable step. Every verified body received in the same event-loop
// tick goes into one BullMQ job (one Redis round trip, one WAIT in replicated mode), and
// each request is answered only after that job is stored. Failure rejects them all.
import type { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../config/env.js';
import { scrapeGauge, type Metrics } from '../metrics/registry.js';
import { fairPriorities, historySequenceKey } from './fair-priority.js';
import { JOBS, type HistoryJobData, type InboundJobData, type RawWebhookEvent } from './names.js';

export interface IngestProducerOptions {
  /**
   * Wait for this many replicas to confirm the write (Redis WAIT) before acking.
   * @defaultValue 0 (AOF on the master only)
   */
  readonly replicas?: number;
  /** @defaultValue 500 */
  readonly waitTimeoutMs?: number;
  /**
   * While fewer replicas than `replicas` are connected and in sync (one restarting, resyncing,
   * or not yet back after a failover), ack on the master's AOF alone instead of answering 503,
   * telling `onLocalAck` how many events were acked so. A connected replica that does not
   * confirm in time still fails the write.
   * @defaultValue none (no replica, no ack)
   */
  readonly localFallback?: { readonly onLocalAck: (events: number) => void };
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
  /**
   * Past this long an enqueue is answered as failed (the webhook answers 503 and Meta retries),
   * whether or not Redis stores the job later: a late job only duplicates the retry, which
   * deduplication absorbs.
   * @defaultValue none (waits for Redis)
   */
  readonly timeoutMs?: number;
  /** Shared cap on the bytes of bodies waiting for Redis. @defaultValue none */
  readonly budget?: PendingBudget;
}

export class EnqueueError extends Error {
  override readonly name: string = 'EnqueueError';
}

/** Redis did not confirm the write within the deadline; the job may still be written later. */
export class EnqueueTimeoutError extends EnqueueError {
  override readonly name = 'EnqueueTimeoutError';
}

/**
 * No replica in sync and this Redis may have been failed over: the jobs just written are removed
 * again, so a worker still on this master does not run what Meta redelivers to the new one.
 */
export class NotMasterError extends EnqueueError {
  override readonly name = 'NotMasterError';
}

/** Too many bytes already wait for Redis: refused before holding this body too. */
export class IngestOverloadedError extends EnqueueError {
  override readonly name = 'IngestOverloadedError';
}

/**
 * The bytes of webhook bodies accepted but not yet written to Redis (or failed), across the
 * producers that share it. A body stays counted until Redis answers for it, even after its
 * request timed out: until then the process still holds it.
 */
export class PendingBudget {
  private used = 0;
  constructor(readonly maxBytes: number) {}
  get bytes(): number {
    return this.used;
  }
  take(n: number): boolean {
    if (this.used + n > this.maxBytes) return false;
    this.used += n;
    return true;
  }
  give(n: number): void {
    this.used -= n;
  }
}

/** How often, at most, the master is asked whether its replicas are back while acks fall back. */
const REPLICA_RECHECK_MS = 1_000;

/** How often, at most, the replicas' addresses are read again while WAIT succeeds. */
const PEER_REFRESH_MS = 10_000;
/** A former replica that does not answer within this is taken to be restarting. */
const PEER_TIMEOUT_MS = 500;

/** Replicas the master reports connected and in sync (`state=online`), from INFO replication. */
export function onlineReplicas(info: string): number {
  return info.split('\n').filter((l) => /^slave\d+:.*\bstate=online\b/.test(l)).length;
}

/** `host:port` of every replica the master reports connected, whatever its state. */
export function replicaAddresses(info: string): string[] {
  return info.split('\n').flatMap((l) => {
    const m = /^slave\d+:ip=([^,]+),port=(\d+)/.exec(l);
    return m ? [`${m[1]}:${m[2]}`] : [];
  });
}

/** A server's `run_id` (it names the process, whatever address it is reached by), from INFO server. */
function runId(info: string): string | undefined {
  return /^run_id:(\w+)/m.exec(info)?.[1];
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
  /** Too few replicas online at the last look: acks skip WAIT, which could only time out. */
  private replicasShort = false;
  private replicasCheckedAt = 0;
  private replicaCheck: Promise<boolean> | undefined;
  /** Every replica seen connected to this master: the ones a failover could have promoted. */
  private readonly peers = new Set<string>();
  private peersSeenAt = 0;
  private mastership: { at: number; still: Promise<boolean> } | undefined;

  constructor(
    private readonly queue: Queue<InboundJobData>,
    /** The connection the queue writes through: WAIT must run on the same one. */
    private readonly redis: Redis,
    private readonly opts: IngestProducerOptions,
  ) {}

  /** `fairKey`: the event's source (its number) when the producer is fair. */
  enqueue(event: RawWebhookEvent, fairKey = ''): Promise<void> {
    if (this.closed) return Promise.reject(new EnqueueError('shutting down'));
    const bytes = Buffer.byteLength(event.body);
    const budget = this.opts.budget;
    if (budget && !budget.take(bytes)) return Promise.reject(new IngestOverloadedError(`${budget.bytes} bytes already wait for Redis (cap ${budget.maxBytes})`));
    return new Promise<void>((resolve, reject) => {
      const ms = this.opts.timeoutMs;
      const timer = ms === undefined ? undefined : setTimeout(() => reject(new EnqueueTimeoutError(`Redis did not confirm within ${ms} ms`)), ms);
      const done = () => clearTimeout(timer);
      this.pending.push({
        event, fairKey, bytes,
        resolve: () => (done(), resolve()),
        reject: (err) => (done(), reject(err)),
      });
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
    const p = this.write(batch).finally(() => {
      this.inFlight.delete(p);
      for (const e of batch) this.opts.budget?.give(e.bytes);
    });
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
      let jobs: { id?: string | undefined }[];
      if (this.opts.fairness) {
        const priorities = await fairPriorities(this.redis, this.opts.fairness.counterKey, groups.map((g) => g[0]!.fairKey));
        jobs = await this.queue.addBulk(groups.map((g, i) => ({ name, data: { events: g.map((p) => p.event) }, opts: { ...jobOpts, priority: priorities[i]! } })));
      } else if (groups.length === 1) {
        jobs = [await this.queue.add(name, { events: groups[0]!.map((p) => p.event) }, jobOpts)];
      } else {
        jobs = await this.queue.addBulk(groups.map((g) => ({ name, data: { events: g.map((p) => p.event) }, opts: jobOpts })));
      }
      try {
        await this.confirm(batch.length);
      } catch (err) {
        if (err instanceof NotMasterError) await Promise.allSettled(jobs.map((j) => (j.id === undefined ? undefined : this.queue.remove(j.id))));
        throw err;
      }
      this.opts.onBatch?.(batch.length, groups.length);
      for (const p of batch) p.resolve();
    } catch (err) {
      const e = err instanceof EnqueueError ? err : new EnqueueError(err instanceof Error ? err.message : String(err));
      for (const p of batch) p.reject(e);
    }
  }

  /** The replicated part of the ack: WAIT, or the local fallback while too few replicas are online. */
  private async confirm(events: number): Promise<void> {
    const replicas = this.opts.replicas ?? 0;
    if (replicas === 0) return;
    const fallback = this.opts.localFallback;
    if (fallback) {
      // A WAIT just came back short and the master is being asked why: ticks behind it learn the
      // answer instead of each blocking the shared connection with a WAIT of their own.
      if (this.replicaCheck) await this.replicaCheck.catch(() => undefined);
      if (this.replicasShort) {
        // While WAIT could only time out, ask the master once a second whether they are back.
        if (Date.now() - this.replicasCheckedAt >= REPLICA_RECHECK_MS) await this.checkReplicas(replicas);
        if (this.replicasShort) return this.localAck(events, fallback);
      }
    }
    // WAIT covers every write this connection made before it: one call for the whole tick.
    const acked = await this.redis.wait(replicas, this.opts.waitTimeoutMs ?? 500);
    if (acked >= replicas) {
      // Learn where the replicas are while they are here: once one is gone, the fallback must
      // be able to ask it whether it was promoted.
      if (fallback && Date.now() - this.peersSeenAt >= PEER_REFRESH_MS) void this.checkReplicas(replicas).catch(() => undefined);
      return;
    }
    if (fallback && !(await this.checkReplicas(replicas))) return this.localAck(events, fallback);
    throw new EnqueueError(`only ${acked} of ${replicas} replicas confirmed the write`);
  }

  /**
   * A master loses its replica to a restart, but also to a failover that promoted it (this master
   * stalled or was cut off from the Sentinels) before this process or this master learnt of it.
   * An ack then rests on a master about to be demoted and resynced from a data set without it, so
   * the fallback acks only while this server is still a master and no former replica says it is
   * one; otherwise the webhook answers 503 and Meta redelivers it to the new master.
   */
  private async localAck(events: number, fallback: NonNullable<IngestProducerOptions['localFallback']>): Promise<void> {
    if (!this.mastership || Date.now() - this.mastership.at >= REPLICA_RECHECK_MS) {
      this.mastership = { at: Date.now(), still: this.stillMaster() };
    }
    if (!(await this.mastership.still)) throw new NotMasterError('no replica in sync and this Redis may no longer be the master: not acking on it alone');
    fallback.onLocalAck(events);
  }

  private async stillMaster(): Promise<boolean> {
    try {
      const [role] = (await this.redis.call('ROLE')) as [string, ...unknown[]];
      if (role !== 'master') return false;
      const self = runId(await this.redis.info('server'));
      const answers = await Promise.all([...this.peers].map((peer) => this.peerRole(peer)));
      // After a failover this process is on a former replica, promoted: it is among the peers,
      // and its own "master" is no other master (the old one is gone or demoted).
      return !answers.some((a) => a?.role === 'master' && a.runId !== self);
    } catch {
      return false;
    }
  }

  /** A former replica's own role and run id, or undefined while it does not answer (restarting). */
  private async peerRole(peer: string): Promise<{ role: string; runId: string | undefined } | undefined> {
    const sep = peer.lastIndexOf(':');
    const o = this.redis.options;
    const client = new Redis({
      host: peer.slice(0, sep), port: Number(peer.slice(sep + 1)), username: o.username, password: o.password, tls: o.tls,
      lazyConnect: true, connectTimeout: PEER_TIMEOUT_MS, commandTimeout: PEER_TIMEOUT_MS, maxRetriesPerRequest: 0, retryStrategy: () => null,
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
      const [[, r], [, info]] = (await client.pipeline().call('ROLE').info('server').exec()) as [[null, [string, ...unknown[]]], [null, string]];
      return { role: r[0], runId: runId(info) };
    } catch {
      return undefined;
    } finally {
      client.disconnect();
    }
  }

  /** Whether enough replicas are online (one question to the master at a time); remembered for confirm(). */
  private checkReplicas(replicas: number): Promise<boolean> {
    this.replicaCheck ??= this.redis.info('replication').then((info) => {
      this.replicasCheckedAt = Date.now();
      this.peersSeenAt = this.replicasCheckedAt;
      for (const peer of replicaAddresses(info)) this.peers.add(peer);
      this.replicasShort = onlineReplicas(info) < replicas;
      return !this.replicasShort;
    }).finally(() => {
      this.replicaCheck = undefined;
    });
    return this.replicaCheck;
  }
}

/**
 * The web process's two producers with the configured durability, deadline and byte cap: live
 * webhooks batched per tick into the inbound queue; history webhooks one job each into their own
 * queue, ordered fairly between numbers. One byte budget for both: it bounds the process.
 */
export function createIngestProducers(config: Config, queues: { inbound: Queue<InboundJobData>; history: Queue<HistoryJobData> }, redis: Redis, metrics: Metrics): { producer: IngestProducer; historyProducer: IngestProducer } {
  const budget = new PendingBudget(config.INGEST_MAX_PENDING_BYTES);
  scrapeGauge(metrics.registry, 'wa_router_ingest_pending_bytes', 'Bytes of webhook bodies waiting for Redis to confirm their enqueue', [], (set) => set({}, budget.bytes));
  const common = {
    attempts: config.INBOUND_ATTEMPTS,
    replicas: config.ACK_DURABILITY === 'replicated' ? config.ACK_REPLICAS : 0,
    waitTimeoutMs: config.ACK_WAIT_TIMEOUT_MS,
    localFallback: config.ACK_REPLICA_FALLBACK === 'local' ? { onLocalAck: (events: number) => metrics.webhook.localAcks.inc(events) } : undefined,
    timeoutMs: config.ENQUEUE_TIMEOUT_MS,
    budget,
  };
  return {
    producer: new IngestProducer(queues.inbound, redis, { ...common, onBatch: (events) => metrics.webhook.batchSize.observe(events) }),
    historyProducer: new IngestProducer(queues.history as unknown as Queue<InboundJobData>, redis, {
      ...common,
      fairness: { counterKey: (phoneNumberId) => historySequenceKey(config.QUEUE_PREFIX, phoneNumberId) },
    }),
  };
}
