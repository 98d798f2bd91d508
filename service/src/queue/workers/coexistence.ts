// Coexistence in the worker: the inbound processor hands over `history`, `smb_message_echoes`
// and `smb_app_state_sync` changes. Echoes and contact changes are small and stored at once;
// history chunks go to their own queue (one job per chunk, its id derived from the chunk, so a
// repeated delivery does not queue twice) and are applied there in bulk.
import { createHash } from 'node:crypto';
import { DelayedError, type Job, type Queue } from 'bullmq';
import type { Logger } from '../../log.js';
import type { HistoryMetrics } from '../../metrics/registry.js';
import type { ChannelResolver } from '../../store/channels.js';
import { applyHistoryChunk, applyStateSync, noteChunksReceived, recordSyncFailure, storeEchoes } from '../../store/coexistence-store.js';
import { isTransientDbError, type Pool } from '../../store/pool.js';
import { COEXISTENCE_FIELDS, parseEchoes, parseHistory, parseStateSync } from '../../sync/coexistence.js';
import type { OtherChange } from '../../whatsapp/parse.js';
import type { HistoryJobData } from '../names.js';

export interface CoexistenceDeps {
  readonly pool: Pool;
  readonly channels: ChannelResolver;
  readonly historyQueue: Queue<HistoryJobData>;
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

/** Handles the coexistence changes of stored events; idempotent, so a retried job may run it again. */
export async function handleCoexistence(deps: CoexistenceDeps, changes: readonly OtherChange[]): Promise<void> {
  const relevant = changes.filter((c) => COEXISTENCE_FIELDS.has(c.field));
  if (relevant.length === 0) return;
  const phoneIds = relevant.map((c) => (isObj(c.value) && isObj(c.value.metadata) ? String(c.value.metadata.phone_number_id ?? '') : ''));
  const channelIds = await deps.channels.resolve(phoneIds.filter(Boolean));
  const jobs: { name: string; data: HistoryJobData; opts: Record<string, unknown> }[] = [];
  const received = new Map<number, number>();
  for (const change of relevant) {
    const value = isObj(change.value) ? change.value : {};
    const pid = isObj(value.metadata) ? String(value.metadata.phone_number_id ?? '') : '';
    const channelId = channelIds.get(pid);
    // No channel serves the number: the raw event is kept unrouted and replayed when one does.
    if (channelId === undefined) continue;
    if (change.field === 'history') {
      const items = Array.isArray(value.history) ? value.history : [];
      for (const [i, chunk] of parseHistory(change).entries()) {
        if (chunk.errors.length > 0 && chunk.rows.length === 0) {
          const e = chunk.errors[0]!;
          await recordSyncFailure(deps.pool, channelId, { code: e.code, message: e.message });
          deps.log.warn({ channelId, code: e.code, err: e.message }, 'history sync reported an error');
          continue;
        }
        const one = { ...value, history: [items[i]] };
        const digest = createHash('sha256').update(JSON.stringify(items[i])).digest('hex').slice(0, 16);
        jobs.push({
          name: 'history-chunk',
          data: { channelId, value: one },
          opts: {
            jobId: `h-${channelId}-${chunk.phase}-${chunk.chunkOrder}-${digest}`,
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
      deps.metrics.stateSync.inc(await applyStateSync(deps.pool, rows));
    }
  }
  if (jobs.length > 0) await deps.historyQueue.addBulk(jobs);
  for (const [channelId, n] of received) await noteChunksReceived(deps.pool, channelId, n);
}

/** The history queue's processor: one chunk, one transaction, exactly once. */
export function createHistoryProcessor(deps: CoexistenceDeps) {
  return async function processHistory(job: Job<HistoryJobData>, token?: string): Promise<{ inserted: number; applied: boolean }> {
    const chunk = parseHistory({ field: 'history', wabaId: null, value: job.data.value as Json })[0];
    if (!chunk) return { inserted: 0, applied: false };
    const t0 = performance.now();
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const r = await applyHistoryChunk(deps.pool, job.data.channelId, chunk);
          deps.metrics.chunkSeconds.observe((performance.now() - t0) / 1000);
          deps.metrics.chunks.inc({ result: r.applied ? 'applied' : 'repeated' });
          deps.metrics.messages.inc(r.inserted);
          if (r.applied) {
            deps.publish?.({ type: 'history.chunk', channelId: job.data.channelId, phase: chunk.phase, chunkOrder: chunk.chunkOrder, progress: chunk.progress, messages: r.messages, inserted: r.inserted, conversations: r.conversations });
          }
          return { inserted: r.inserted, applied: r.applied };
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
