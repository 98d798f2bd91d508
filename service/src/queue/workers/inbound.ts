// Inbound processor: turns webhook batches into rows. One bad event never blocks its
// batch: it is split out into a job of its own, retried with backoff and, if it keeps
// failing, left in the failed set (our dead-letter queue) with its reason.
import { createHash } from 'node:crypto';
import { DelayedError, UnrecoverableError, type Job, type Queue } from 'bullmq';
import type { Logger } from '../../log.js';
import type { InboundMetrics } from '../../metrics/registry.js';
import { clearUnrouted, routableUnroutedEvents, type ChannelResolver, type UnroutedEvent } from '../../store/channels.js';
import { storeInboundBatch, type InboundEventRecord, type InboundStoreResult } from '../../store/inbound-store.js';
import { isTransientDbError, type Pool } from '../../store/pool.js';
import { WriteCoalescer } from '../../store/coalescer.js';
import { storedEvents, type Publish } from '../../events/hub.js';
import { EnvelopeError, parseBody, parseEvent, type OtherChange } from '../../whatsapp/parse.js';
import { JOBS, type InboundJobData, type RawWebhookEvent } from '../names.js';

export interface InboundProcessorDeps {
  readonly pool: Pool;
  readonly channels: ChannelResolver;
  readonly queue: Queue<InboundJobData>;
  readonly log: Logger;
  readonly metrics: InboundMetrics;
  readonly attempts: number;
  /** Called after a batch commits, with what it stored (routing). */
  readonly onStored?: (result: InboundStoreResult) => void;
  /**
   * Realtime events: a batch's new messages the moment their rows commit, ahead of the batch's
   * other statements; its status changes once those commit.
   */
  readonly publish?: Publish;
  /** Coexistence changes (history, echoes, app state) of the stored events; idempotent. */
  /** `delivery`: see deliveryOf. */
  readonly coexistence?: (changes: OtherChange[], delivery: Buffer) => Promise<unknown>;
}

/** Thrown for an event we can never store as it is (bad JSON, an item without an id). */
export class InvalidEventError extends UnrecoverableError {
  override readonly name = 'InvalidEventError';
}

const DEADLOCK_RETRIES = 3;

/**
 * What one delivery of a webhook's coexistence changes is, for counting history chunks received:
 * the job that carries it and its place there. A retry of the job is the same delivery; Meta
 * delivering the body again is a new one.
 */
export function deliveryOf(job: Job, place: string): Buffer {
  return createHash('sha256').update(`${job.queueName}:${job.id}:${place}`).digest();
}

function toRecord(ev: RawWebhookEvent, force: boolean, metrics: InboundMetrics): InboundEventRecord {
  let body: unknown;
  let repaired: number;
  try {
    ({ body, repaired } = parseBody(ev.body));
  } catch {
    throw new InvalidEventError('body is not valid JSON');
  }
  let parsed;
  try {
    parsed = parseEvent(body);
  } catch (err) {
    if (err instanceof EnvelopeError) throw new InvalidEventError(err.message);
    throw err;
  }
  metrics.repairedStrings.inc(repaired);
  // The hash stays the one of the bytes Meta signed, so a redelivery is still recognized.
  return { sha256: createHash('sha256').update(ev.body).digest(), receivedAt: new Date(ev.receivedAt), raw: repaired > 0 ? JSON.stringify(body) : ev.body, parsed, force };
}

export function createInboundProcessor(deps: InboundProcessorDeps) {
  const { pool, channels, log, metrics } = deps;
  async function storeNow(records: InboundEventRecord[]): Promise<InboundStoreResult> {
    const channelIds = await channels.resolve(records.flatMap((r) => r.parsed.phoneNumberIds));
    // Messages an attempt committed before a later statement of it failed: still this batch's new
    // messages once a retry succeeds (published once, when they committed).
    const committed: InboundStoreResult['newMessages'] = [];
    const onMessages = (newMessages: InboundStoreResult['newMessages']) => {
      committed.push(...newMessages);
      deps.publish?.(storedEvents({ newMessages, statusChanges: [] }));
    };
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await storeInboundBatch(pool, records, channelIds, onMessages);
        const merged = { ...result, newMessages: committed, messagesInserted: committed.length };
        observe(merged);
        return merged;
      } catch (err) {
        // A deadlock or serialization failure is resolved by running the batch again now; so is a
        // row a concurrent batch changed under it (a contact merged by a number change: foreign
        // key; a contact re-keyed onto a number just inserted: unique key), resolved anew.
        const code = (err as { code?: string }).code;
        if ((code === '40P01' || code === '40001' || code === '23503' || code === '23505') && attempt < DEADLOCK_RETRIES) continue;
        throw err;
      }
    }
  }
  // Jobs processed at the same moment share one bulk write; each job still gets its own
  // outcome when the database refuses something (see WriteCoalescer).
  const coalescer = new WriteCoalescer<InboundEventRecord, InboundStoreResult>({ write: storeNow, splitOn: (err) => !isTransientDbError(err) });
  const store = (records: InboundEventRecord[]) => coalescer.submit(records);

  function observe(result: InboundStoreResult): void {
    metrics.messagesStored.inc(result.messagesInserted);
    metrics.statusesStored.inc(result.statusesInserted);
    metrics.duplicateEvents.inc(result.duplicateEvents);
    metrics.unroutedEvents.inc(result.unroutedEvents);
    if (result.statusChanges.length > 0) deps.publish?.(storedEvents({ newMessages: [], statusChanges: result.statusChanges }));
    deps.onStored?.(result);
  }

  async function isolate(events: { ev: RawWebhookEvent; reason: string }[]): Promise<void> {
    if (events.length === 0) return;
    await deps.queue.addBulk(
      events.map(({ ev, reason }) => ({
        name: JOBS.webhookEvent,
        data: { events: [ev], force: true, isolatedBecause: reason },
        opts: { attempts: deps.attempts, backoff: { type: 'exponential', delay: 2_000 }, removeOnComplete: { age: 3_600, count: 1_000 }, removeOnFail: false },
      })),
    );
    metrics.isolatedEvents.inc(events.length);
  }

  /** Stores the batch; if the database refuses it, finds the culprits by storing events one by one. */
  async function run(job: Job<InboundJobData>, records: InboundEventRecord[], sources: ReadonlyMap<InboundEventRecord, RawWebhookEvent>, rejected: Map<string, { ev: RawWebhookEvent; reason: string }>): Promise<void> {
    try {
      if (records.length > 0) await store(records);
    } catch (err) {
      if (isTransientDbError(err) || records.length <= 1) throw err;
      log.warn({ jobId: job.id, err: (err as Error).message }, 'batch refused; storing its events one by one');
      for (const rec of records) {
        try {
          await storeNow([rec]);
        } catch (e) {
          if (isTransientDbError(e)) throw e;
          const ev = sources.get(rec)!;
          rejected.set(ev.body, { ev, reason: e instanceof Error ? e.message : String(e) });
        }
      }
    }
  }

  /**
   * Stores the unrouted events a channel now serves, page by page, under their stored hashes (so
   * the flag of that very row is cleared). Caches are refreshed first; if an event still finds no
   * channel the job fails and is retried with backoff, since its events would stay unrouted.
   */
  async function replayUnrouted(job: Job<InboundJobData>, phoneNumberId: string | null): Promise<{ events: number; isolated: number }> {
    let afterId = 0;
    let events = 0;
    let stranded = 0;
    let isolated = 0;
    for (;;) {
      const page = await routableUnroutedEvents(pool, phoneNumberId, afterId, 200);
      if (page.length === 0) break;
      afterId = page[page.length - 1]!.id;
      const pids = new Set(page.flatMap((e) => e.phoneNumberIds));
      for (const pid of pids) channels.forget(pid);
      const served = await channels.resolve(pids);
      const records: InboundEventRecord[] = [];
      const sources = new Map<InboundEventRecord, UnroutedEvent>();
      for (const e of page) {
        if (!e.phoneNumberIds.some((p) => served.has(p))) {
          stranded++;
          continue;
        }
        try {
          const rec = { ...toRecord(e, false, metrics), sha256: e.sha256 };
          records.push(rec);
          sources.set(rec, e);
        } catch (err) {
          log.warn({ eventId: e.id, err: (err as Error).message }, 'unrouted event no longer parses; left unrouted');
        }
      }
      const stored = await storeReplay(records, sources);
      if (deps.coexistence) for (const r of stored) if (r.parsed.other.length > 0) await deps.coexistence(r.parsed.other, deliveryOf(job, r.sha256.toString('hex')));
      events += stored.length;
      isolated += records.length - stored.length;
    }
    if (stranded > 0) throw new Error(`${stranded} unrouted events found no channel yet; retrying`);
    return { events, isolated };
  }

  /**
   * Stores a page of replayed events; if the database refuses it, stores them one by one as the
   * live path does. One it refuses goes the dead-letter way and loses its unrouted flag, so it
   * neither blocks its neighbours nor makes every later replay and sweep fail again.
   */
  async function storeReplay(records: InboundEventRecord[], sources: ReadonlyMap<InboundEventRecord, UnroutedEvent>): Promise<InboundEventRecord[]> {
    if (records.length === 0) return records;
    try {
      await storeNow(records);
      return records;
    } catch (err) {
      if (isTransientDbError(err)) throw err;
      log.warn({ events: records.length, err: (err as Error).message }, 'replayed page refused; storing its events one by one');
    }
    const stored: InboundEventRecord[] = [];
    const refused: { ev: UnroutedEvent; reason: string }[] = [];
    for (const rec of records) {
      try {
        await storeNow([rec]);
        stored.push(rec);
      } catch (e) {
        if (isTransientDbError(e)) throw e;
        refused.push({ ev: sources.get(rec)!, reason: e instanceof Error ? e.message : String(e) });
      }
    }
    if (refused.length > 0) {
      await isolate(refused.map(({ ev, reason }) => ({ ev: { body: ev.body, receivedAt: ev.receivedAt }, reason })));
      await clearUnrouted(pool, refused.map(({ ev }) => ev.id));
    }
    return stored;
  }

  return async function processInbound(job: Job<InboundJobData>, token?: string): Promise<{ events: number; isolated: number }> {
    if (job.name === JOBS.replayUnrouted) return replayUnrouted(job, job.data.replayFor ?? null);
    const force = job.data.force === true;
    const single = job.name === JOBS.webhookEvent || job.data.events.length === 1;
    const records: InboundEventRecord[] = [];
    const sources = new Map<InboundEventRecord, RawWebhookEvent>();
    const rejected = new Map<string, { ev: RawWebhookEvent; reason: string }>();
    for (const ev of job.data.events) {
      try {
        const rec = toRecord(ev, force, metrics);
        records.push(rec);
        sources.set(rec, ev);
        // What is valid is stored now; the event still goes the dead-letter way with the reason.
        if (rec.parsed.invalid.length > 0) rejected.set(ev.body, { ev, reason: rec.parsed.invalid.map((i) => `${i.path}: ${i.reason}`).join('; ') });
      } catch (err) {
        if (single) throw err;
        rejected.set(ev.body, { ev, reason: err instanceof Error ? err.message : String(err) });
      }
    }
    try {
      await run(job, records, sources, rejected);
      if (deps.coexistence) for (const [i, r] of records.entries()) if (r.parsed.other.length > 0) await deps.coexistence(r.parsed.other, deliveryOf(job, String(i)));
    } catch (err) {
      if (!isTransientDbError(err)) throw err;
      // The database is away: wait without spending attempts, so an outage of any length
      // ends with the rows stored, not in the dead-letter queue.
      // Capped low: once the database is back, the backlog should resume within seconds.
      const delay = Math.min(5_000, 250 * 2 ** Math.min(job.attemptsStarted, 6));
      metrics.transientDelays.inc();
      log.warn({ jobId: job.id, delayMs: delay, err: (err as Error).message }, 'database unavailable; job delayed');
      if (!token) throw err;
      await job.moveToDelayed(Date.now() + delay, token);
      throw new DelayedError();
    }
    if (single && rejected.size > 0) {
      // Its valid rows are in; the rest can never be stored as sent: fail for good, with the reason.
      throw new InvalidEventError([...rejected.values()][0]!.reason);
    }
    await isolate([...rejected.values()]);
    return { events: records.length, isolated: rejected.size };
  };
}
