// Coexistence in the worker: the inbound processor hands over `history`, `smb_message_echoes`
// and `smb_app_state_sync` changes. Echoes and contact changes are small and stored at once;
// history chunks go to their own queue (one job per chunk, its id derived from the chunk, so a
// repeated delivery does not queue twice) and are applied there in bulk.
import { createHash } from 'node:crypto';
import { DelayedError, type Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../../log.js';
import type { HistoryMetrics } from '../../metrics/registry.js';
import type { ChannelResolver } from '../../store/channels.js';
import { applyHistoryChunk, applyStateSync, noteChunksReceived, recordChunkFailure, recordSyncError, storeEchoes } from '../../store/coexistence-store.js';
import { isTransientDbError, type Pool } from '../../store/pool.js';
import { COEXISTENCE_FIELDS, parseEchoes, parseHistory, parseStateSync } from '../../sync/coexistence.js';
import type { OtherChange } from '../../whatsapp/parse.js';
import { JOBS, type HistoryChunkJobData, type HistoryJobData, type InboundJobData } from '../names.js';
import { parseEvent } from '../../whatsapp/parse.js';

export interface CoexistenceDeps {
  readonly pool: Pool;
  readonly channels: ChannelResolver;
  readonly historyQueue: Queue<HistoryJobData>;
  /** Where a history webhook for a number no channel serves goes, to be kept unrouted. */
  readonly inboundQueue?: Queue<InboundJobData>;
  /** For the per-channel chunk counters that make the queue fair between channels. */
  readonly redis: Redis;
  readonly metrics: HistoryMetrics;
  readonly log: Logger;
  readonly attempts: number;
  /** One summary event per applied chunk (never one per message). */
  readonly publish?: (event: Record<string, unknown>) => void;
}

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

export function hasCoexistence(changes: readonly OtherChange[]): boolean {
  return changes.some((c) => COEXISTENCE_FIELDS.has(c.field));
}

/**
 * Handles the coexistence changes of stored events; idempotent, so a retried job may run it again.
 * Returns the phone_number_ids no channel serves (their changes were skipped).
 */
export async function handleCoexistence(deps: CoexistenceDeps, changes: readonly OtherChange[]): Promise<string[]> {
  const relevant = changes.filter((c) => COEXISTENCE_FIELDS.has(c.field));
  if (relevant.length === 0) return [];
  const unrouted = new Set<string>();
  const phoneIds = relevant.map((c) => (isObj(c.value) && isObj(c.value.metadata) ? String(c.value.metadata.phone_number_id ?? '') : ''));
  const channelIds = await deps.channels.resolve(phoneIds.filter(Boolean));
  const jobs: { name: string; data: HistoryChunkJobData; opts: Record<string, unknown> }[] = [];
  const received = new Map<number, number>();
  for (const change of relevant) {
    const value = isObj(change.value) ? change.value : {};
    const pid = isObj(value.metadata) ? String(value.metadata.phone_number_id ?? '') : '';
    const channelId = channelIds.get(pid);
    // No channel serves the number: the raw event is kept unrouted and replayed when one does.
    if (channelId === undefined) {
      unrouted.add(pid);
      continue;
    }
    if (change.field === 'history') {
      const items = Array.isArray(value.history) ? value.history : [];
      for (const [i, chunk] of parseHistory(change).entries()) {
        for (const e of chunk.errors) {
          await recordSyncError(deps.pool, channelId, e);
          deps.log.warn({ channelId, code: e.code, err: e.message }, 'history sync reported an error');
        }
        if (chunk.errors.length > 0 && chunk.rows.length === 0) continue;
        const one = { ...value, history: [items[i]] };
        jobs.push({
          name: HISTORY_CHUNK,
          data: { channelId, value: one },
          opts: {
            jobId: `h-${channelId}-${chunk.phase}-${chunk.chunkOrder}-${chunkDigest(items[i]).toString('hex').slice(0, 16)}`,
            attempts: deps.attempts, backoff: { type: 'exponential', delay: 2_000 },
            removeOnComplete: { age: 3_600, count: 1_000 }, removeOnFail: false,
          },
        });
        received.set(channelId, (received.get(channelId) ?? 0) + 1);
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
  if (jobs.length > 0) await deps.historyQueue.addBulk(await fairPriorities(deps.historyQueue, deps.redis, jobs));
  for (const [channelId, n] of received) await noteChunksReceived(deps.pool, channelId, n);
  return [...unrouted];
}

const HISTORY_CHUNK = 'history-chunk';

/** What tells two deliveries of a chunk slot apart: the chunk object's bytes. */
function chunkDigest(item: unknown): Buffer {
  return createHash('sha256').update(JSON.stringify(item)).digest();
}

const chunkOf = (data: HistoryChunkJobData) => parseHistory({ field: 'history', wabaId: null, value: data.value as Json })[0];

/**
 * A chunk job that failed for good (dead-lettered): its slot is kept as failed, so the run shows
 * `failed` and counts it until a replay from the dead-letter queue applies it.
 */
export async function recordDeadChunk(deps: Pick<CoexistenceDeps, 'pool' | 'metrics' | 'log'>, job: Job<HistoryJobData>, err: Error): Promise<void> {
  if (job.name !== HISTORY_CHUNK) return;
  const data = job.data as HistoryChunkJobData;
  const chunk = chunkOf(data);
  deps.metrics.chunks.inc({ result: 'failed' });
  if (!chunk) return;
  await recordChunkFailure(deps.pool, data.channelId, chunk, err.message).catch((e: Error) => deps.log.warn({ jobId: job.id, err: e.message }, 'failed chunk not recorded'));
}

/** BullMQ's highest priority number (lower runs first). */
const MAX_PRIORITY = 2 ** 21 - 1;

/**
 * Fairness between channels on the one history queue: each job's priority is its position in its
 * own channel's sync (chunk 1, 2, 3, ...), so a second channel's first chunks run before the first
 * channel's 50th, and ten inboxes syncing at once progress together instead of one after another.
 * The per-channel counter expires a day after its last chunk, so a later sync starts at 1 again.
 */
async function fairPriorities<T extends { data: HistoryChunkJobData; opts: Record<string, unknown> }>(queue: Queue<HistoryJobData>, client: Redis, jobs: T[]): Promise<T[]> {
  const byChannel = new Map<number, T[]>();
  for (const j of jobs) byChannel.set(j.data.channelId, [...(byChannel.get(j.data.channelId) ?? []), j]);
  for (const [channelId, list] of byChannel) {
    const key = `${queue.opts.prefix ?? 'bull'}:${queue.name}:seq:${channelId}`;
    const [[, end]] = (await client.multi().incrby(key, list.length).expire(key, 86_400).exec()) as [[Error | null, number], unknown];
    list.forEach((j, i) => {
      j.opts.priority = ((end - list.length + i) % MAX_PRIORITY) + 1;
    });
  }
  return jobs;
}

/** The history queue's processor: one chunk, one transaction, exactly once. */
export function createHistoryProcessor(deps: CoexistenceDeps) {
  /**
   * Raw history webhooks straight from the web process: split into one job per chunk (fair
   * priorities, parallel), errors recorded; a body for a number no channel serves goes to the
   * inbound queue, which keeps it unrouted until a channel does.
   */
  async function fanOut(job: Job<InboundJobData>): Promise<boolean> {
    for (const ev of job.data.events) {
      let changes: OtherChange[];
      try {
        changes = parseEvent(JSON.parse(ev.body)).other;
      } catch (err) {
        deps.log.warn({ jobId: job.id, err: (err as Error).message }, 'history webhook not parseable; handed to the inbound path');
        changes = [];
      }
      const unrouted = changes.length > 0 ? await handleCoexistence(deps, changes) : ['?'];
      if (unrouted.length > 0 && deps.inboundQueue) {
        await deps.inboundQueue.add(JOBS.webhookEvent, { events: [ev], force: true }, { attempts: deps.attempts, backoff: { type: 'exponential', delay: 2_000 }, removeOnComplete: { age: 3_600, count: 1_000 }, removeOnFail: false });
      }
    }
    return true;
  }

  return async function processHistory(job: Job<HistoryJobData>, token?: string): Promise<{ inserted: number; applied: boolean }> {
    if (job.name !== HISTORY_CHUNK) return { inserted: 0, applied: await fanOut(job as Job<InboundJobData>) };
    const data = job.data as HistoryChunkJobData;
    const chunk = chunkOf(data);
    if (!chunk) return { inserted: 0, applied: false };
    const value = data.value as { history?: unknown[] };
    const digest = chunkDigest(value.history?.[0]);
    const t0 = performance.now();
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const r = await applyHistoryChunk(deps.pool, data.channelId, chunk, digest);
          deps.metrics.chunkSeconds.observe((performance.now() - t0) / 1000);
          deps.metrics.chunks.inc({ result: r.outcome === 'repeat' ? 'repeated' : r.outcome });
          deps.metrics.messages.inc(r.inserted);
          deps.metrics.mediaFilled.inc(r.mediaFilled);
          if (r.outcome !== 'repeat') {
            deps.publish?.({ type: 'history.chunk', channelId: data.channelId, phase: chunk.phase, chunkOrder: chunk.chunkOrder, progress: chunk.progress, messages: r.messages, inserted: r.inserted, mediaFilled: r.mediaFilled, conversations: r.conversations });
          }
          return { inserted: r.inserted, applied: r.outcome !== 'repeat' };
        } catch (err) {
          const code = (err as { code?: string }).code;
          if ((code === '40P01' || code === '40001') && attempt < 3) continue;
          throw err;
        }
      }
    } catch (err) {
      if (!isTransientDbError(err) || !token) throw err;
      // The database is away: wait without spending attempts (same rule as live webhooks).
      const delay = Math.min(5_000, 250 * 2 ** Math.min(job.attemptsStarted, 6));
      deps.log.warn({ jobId: job.id, delayMs: delay, err: (err as Error).message }, 'database unavailable; history chunk delayed');
      await job.moveToDelayed(Date.now() + delay, token);
      throw new DelayedError();
    }
  };
}
