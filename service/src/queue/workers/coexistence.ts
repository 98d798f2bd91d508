// Coexistence in the worker. History webhooks come from the web process straight into the history
// queue (one job per webhook, fairly ordered between numbers) and their chunks are applied there,
// in bulk, one transaction each. The inbound processor hands over the coexistence changes of the
// webhooks it stores: echoes and contact changes are small and stored at once; a history chunk
// that came that way gets a job of its own on the history queue (its id derived from the chunk,
// so a repeated delivery does not queue twice).
import { createHash } from 'node:crypto';
import type { Publish } from '../../events/hub.js';
import { DelayedError, UnrecoverableError, Worker, type Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../../log.js';
import type { HistoryMetrics, Metrics } from '../../metrics/registry.js';
import type { ChannelResolver } from '../../store/channels.js';
import { applyHistoryChunk, applyStateSync, noteChunksReceived, recordChunkFailure, recordSyncError, storeEchoes } from '../../store/coexistence-store.js';
import { isTransientDbError, type Pool } from '../../store/pool.js';
import { COEXISTENCE_FIELDS, parseEchoes, parseHistory, parseStateSync, type HistoryChunk } from '../../sync/coexistence.js';
import { parseBody, parseEvent, type OtherChange } from '../../whatsapp/parse.js';
import { fairPriorities } from '../fair-priority.js';
import { deliveryOf } from './inbound.js';
import { JOBS, QUEUES, type HistoryChunkJobData, type HistoryJobData, type InboundJobData } from '../names.js';
import { WORKER_RUN_RETRY_MS } from '../redis.js';

export interface CoexistenceDeps {
  readonly pool: Pool;
  readonly channels: ChannelResolver;
  readonly historyQueue: Queue<HistoryJobData>;
  /** Where a history webhook for a number no channel serves goes, to be kept unrouted. */
  readonly inboundQueue?: Queue<InboundJobData>;
  /** For the per-number counters that make the history queue fair between numbers. */
  readonly redis: Redis;
  readonly sequenceKey: (phoneNumberId: string) => string;
  readonly metrics: HistoryMetrics;
  readonly log: Logger;
  readonly attempts: number;
  /** One summary event per applied chunk (never one per message). */
  readonly publish?: Publish;
}

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const phoneNumberIdOf = (c: OtherChange) => (isObj(c.value) && isObj(c.value.metadata) ? String(c.value.metadata.phone_number_id ?? '') : '');

export function hasCoexistence(changes: readonly OtherChange[]): boolean {
  return changes.some((c) => COEXISTENCE_FIELDS.has(c.field));
}

const HISTORY_CHUNK = 'history-chunk';

const jobOptions = (attempts: number) => ({ attempts, backoff: { type: 'exponential', delay: 2_000 }, removeOnComplete: { age: 3_600, count: 1_000 }, removeOnFail: false });

/** What tells two deliveries of a chunk slot apart: the chunk object's bytes. */
function chunkDigest(item: unknown): Buffer {
  return createHash('sha256').update(JSON.stringify(item)).digest();
}

/** A `history` change's chunks, each with its digest and the change value holding only it. */
function chunksOf(change: OtherChange): { chunk: HistoryChunk; digest: Buffer; value: Json }[] {
  const value = isObj(change.value) ? change.value : {};
  const items = Array.isArray(value.history) ? value.history : [];
  return parseHistory(change).map((chunk, i) => ({ chunk, digest: chunkDigest(items[i]), value: { ...value, history: [items[i]] } }));
}

/** Applies one chunk (deadlocks retried), with its metrics and its one summary event. */
async function applyChunk(deps: CoexistenceDeps, channelId: number, chunk: HistoryChunk, digest: Buffer): Promise<void> {
  const t0 = performance.now();
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await applyHistoryChunk(deps.pool, channelId, chunk, digest);
      deps.metrics.chunkSeconds.observe((performance.now() - t0) / 1000);
      deps.metrics.chunks.inc({ result: r.outcome === 'repeat' ? 'repeated' : r.outcome });
      deps.metrics.messages.inc(r.inserted);
      deps.metrics.mediaFilled.inc(r.mediaFilled);
      if (r.outcome !== 'repeat') {
        deps.publish?.({ type: 'history.chunk', channelId, phase: chunk.phase, chunkOrder: chunk.chunkOrder, progress: chunk.progress, messages: r.messages, inserted: r.inserted, mediaFilled: r.mediaFilled, conversations: r.conversations });
      }
      return;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if ((code === '40P01' || code === '40001') && attempt < 3) continue;
      throw err;
    }
  }
}

/**
 * Handles coexistence changes; idempotent, so a retried job may run it again. History chunks are
 * applied here when `inline` (the history queue's own jobs), else queued as chunk jobs.
 * Returns the phone_number_ids no channel serves (their changes were skipped).
 */
export async function handleCoexistence(deps: CoexistenceDeps, changes: readonly OtherChange[], opts: { inline?: boolean; delivery: Buffer }): Promise<string[]> {
  const relevant = changes.filter((c) => COEXISTENCE_FIELDS.has(c.field));
  if (relevant.length === 0) return [];
  const unrouted = new Set<string>();
  const channelIds = await deps.channels.resolve(relevant.map(phoneNumberIdOf).filter(Boolean));
  const jobs: { name: string; data: HistoryChunkJobData; opts: Record<string, unknown>; number: string }[] = [];
  const toApply: { channelId: number; chunk: HistoryChunk; digest: Buffer }[] = [];
  // Each chunk of this delivery is counted as received once, however often its job runs.
  const received = new Map<number, Buffer[]>();
  for (const [ci, change] of relevant.entries()) {
    const pid = phoneNumberIdOf(change);
    const channelId = channelIds.get(pid);
    // No channel serves the number: the raw event is kept unrouted and replayed when one does.
    if (channelId === undefined) {
      unrouted.add(pid);
      continue;
    }
    if (change.field === 'history') {
      for (const [hi, { chunk, digest, value }] of chunksOf(change).entries()) {
        for (const e of chunk.errors) {
          await recordSyncError(deps.pool, channelId, e);
          deps.log.warn({ channelId, code: e.code, err: e.message }, 'history sync reported an error');
        }
        if (chunk.errors.length > 0 && chunk.rows.length === 0) continue;
        const delivery = createHash('sha256').update(opts.delivery).update(`${ci}.${hi}`).digest();
        received.set(channelId, [...(received.get(channelId) ?? []), delivery]);
        if (opts.inline) {
          toApply.push({ channelId, chunk, digest });
        } else {
          jobs.push({
            name: HISTORY_CHUNK, number: pid, data: { channelId, value },
            opts: { jobId: `h-${channelId}-${chunk.phase}-${chunk.chunkOrder}-${digest.toString('hex').slice(0, 16)}`, ...jobOptions(deps.attempts) },
          });
        }
      }
    } else if (change.field === 'smb_message_echoes') {
      const { rows } = parseEchoes(change);
      const r = await storeEchoes(deps.pool, channelId, rows);
      deps.metrics.echoes.inc(r.inserted);
    } else if (change.field === 'smb_app_state_sync') {
      const { rows } = parseStateSync(change);
      deps.metrics.stateSync.inc(await applyStateSync(deps.pool, channelId, rows));
    }
  }
  if (jobs.length > 0) {
    const priorities = await fairPriorities(deps.redis, deps.sequenceKey, jobs.map((j) => j.number));
    await deps.historyQueue.addBulk(jobs.map((j, i) => ({ name: j.name, data: j.data, opts: { ...j.opts, priority: priorities[i]! } })));
  }
  for (const [channelId, deliveries] of received) await noteChunksReceived(deps.pool, channelId, deliveries);
  for (const a of toApply) await applyChunk(deps, a.channelId, a.chunk, a.digest);
  return [...unrouted];
}

/** The chunks a history queue job carries, with their channels (for the dead-letter record). */
async function jobChunks(deps: Pick<CoexistenceDeps, 'channels'>, job: Job<HistoryJobData>): Promise<{ channelId: number; chunk: HistoryChunk }[]> {
  if (job.name === HISTORY_CHUNK) {
    const data = job.data as HistoryChunkJobData;
    return parseHistory({ field: 'history', wabaId: null, value: data.value as Json }).map((chunk) => ({ channelId: data.channelId, chunk }));
  }
  const out: { channelId: number; chunk: HistoryChunk }[] = [];
  for (const ev of (job.data as InboundJobData).events ?? []) {
    let changes: OtherChange[];
    try {
      changes = parseEvent(parseBody(ev.body).body).other.filter((c) => c.field === 'history');
    } catch {
      continue;
    }
    const channelIds = await deps.channels.resolve(changes.map(phoneNumberIdOf).filter(Boolean));
    for (const change of changes) {
      const channelId = channelIds.get(phoneNumberIdOf(change));
      if (channelId !== undefined) for (const chunk of parseHistory(change)) if (chunk.errors.length === 0 || chunk.rows.length > 0) out.push({ channelId, chunk });
    }
  }
  return out;
}

/**
 * A history job that failed for good (dead-lettered): its chunks not applied yet are kept as
 * failed, so the run shows `failed` and counts them until a replay from the dead-letter queue
 * applies them.
 */
export async function recordDeadChunk(deps: Pick<CoexistenceDeps, 'pool' | 'channels' | 'metrics' | 'log'>, job: Job<HistoryJobData>, err: Error): Promise<void> {
  try {
    for (const { channelId, chunk } of await jobChunks(deps, job)) {
      if (await recordChunkFailure(deps.pool, channelId, chunk, err.message)) deps.metrics.chunks.inc({ result: 'failed' });
    }
  } catch (e) {
    deps.log.warn({ jobId: job.id, err: (e as Error).message }, 'failed history chunk not recorded');
  }
}

/** The history queue's processor: webhooks from the web process, or single chunks; one transaction per chunk. */
export function createHistoryProcessor(deps: CoexistenceDeps) {
  /**
   * Raw history webhooks straight from the web process: their chunks applied here, errors
   * recorded; a body for a number no channel serves goes to the inbound queue, which keeps it
   * unrouted until a channel does.
   */
  async function applyWebhooks(job: Job<InboundJobData>): Promise<void> {
    for (const [i, ev] of job.data.events.entries()) {
      let changes: OtherChange[];
      try {
        const { body, repaired } = parseBody(ev.body);
        changes = parseEvent(body).other;
        deps.metrics.repairedStrings.inc(repaired);
      } catch (err) {
        deps.log.warn({ jobId: job.id, err: (err as Error).message }, 'history webhook not parseable; handed to the inbound path');
        changes = [];
      }
      const unrouted = changes.length > 0 ? await handleCoexistence(deps, changes, { inline: true, delivery: deliveryOf(job, String(i)) }) : ['?'];
      if (unrouted.length > 0 && deps.inboundQueue) await deps.inboundQueue.add(JOBS.webhookEvent, { events: [ev], force: true }, jobOptions(deps.attempts));
    }
  }

  return async function processHistory(job: Job<HistoryJobData>, token?: string): Promise<void> {
    try {
      if (job.name !== HISTORY_CHUNK) {
        await applyWebhooks(job as Job<InboundJobData>);
        return;
      }
      const data = job.data as HistoryChunkJobData;
      const value = data.value as { history?: unknown[] };
      const [chunk] = parseHistory({ field: 'history', wabaId: null, value: data.value as Json });
      if (chunk) await applyChunk(deps, data.channelId, chunk, chunkDigest(value.history?.[0]));
    } catch (err) {
      if (!isTransientDbError(err) || !token) throw err;
      // The database is away: wait without spending attempts (same rule as live webhooks).
      const delay = Math.min(5_000, 250 * 2 ** Math.min(job.attemptsStarted, 6));
      deps.log.warn({ jobId: job.id, delayMs: delay, err: (err as Error).message }, 'database unavailable; history job delayed');
      await job.moveToDelayed(Date.now() + delay, token);
      throw new DelayedError();
    }
  };
}

/** The history queue's worker: chunks applied `concurrency` at once, dead-lettered ones recorded as failed. */
export function startHistoryWorker(deps: CoexistenceDeps, opts: { connection: Redis; prefix: string; concurrency: number; lockMs: number; jobs: Metrics['jobs'] }): Worker<HistoryJobData> {
  const { log } = deps;
  const w = new Worker<HistoryJobData>(QUEUES.history, createHistoryProcessor(deps), {
    connection: opts.connection,
    prefix: opts.prefix,
    concurrency: opts.concurrency,
    maxStalledCount: 10,
    // The lock is renewed while a chunk runs, so a big chunk is never taken for stalled;
    // a killed worker's chunk is picked up again within a lock period.
    lockDuration: opts.lockMs,
    runRetryDelay: WORKER_RUN_RETRY_MS,
    stalledInterval: opts.lockMs,
  });
  w.on('completed', (job) => opts.jobs.processed.inc({ queue: job.queueName, result: 'completed' }));
  w.on('failed', (job, err) => {
    if (!job) return;
    const final = err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
    opts.jobs.processed.inc({ queue: job.queueName, result: final ? 'dead_lettered' : 'retried' });
    if (final) void recordDeadChunk(deps, job, err);
    (final ? log.error.bind(log) : log.warn.bind(log))({ jobId: job.id, attemptsMade: job.attemptsMade, err: err.message }, final ? 'history chunk dead-lettered' : 'history chunk failed; will retry');
  });
  w.on('error', (err) => log.warn({ err: err.message }, 'history worker error'));
  return w;
}
