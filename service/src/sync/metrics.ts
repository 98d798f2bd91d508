// The coexistence history-sync gauges: read from Postgres at scrape time, once a second at most
// however many gauges ask (one query serves them all).
import type { Registry } from 'prom-client';
import { scrapeGauge } from '../metrics/registry.js';
import { syncRunFigures, type SyncRunFigures } from '../store/coexistence-store.js';
import type { Pool } from '../store/pool.js';

export function registerSyncGauges(registry: Registry, pool: Pool): void {
  let runs: { at: number; figures: Promise<SyncRunFigures[]> } | undefined;
  const figures = () => {
    if (!runs || Date.now() - runs.at > 1_000) runs = { at: Date.now(), figures: syncRunFigures(pool) };
    return runs.figures;
  };
  scrapeGauge(registry, 'wa_router_history_sync_progress', 'Coexistence history sync progress per channel (0-100, as Meta reports it)', ['channel'], async (set) => {
    for (const f of await figures()) set({ channel: String(f.channelId) }, f.progress);
  });
  scrapeGauge(registry, 'wa_router_history_sync_chunks', 'History chunks per channel: received (deliveries), applied, failed (dead-lettered, not yet replayed)', ['channel', 'state'], async (set) => {
    for (const f of await figures()) {
      const channel = String(f.channelId);
      set({ channel, state: 'received' }, f.chunksReceived);
      set({ channel, state: 'applied' }, f.chunksApplied);
      set({ channel, state: 'failed' }, f.chunksFailed);
    }
  });
  scrapeGauge(registry, 'wa_router_history_sync_messages', 'History messages stored per channel', ['channel'], async (set) => {
    for (const f of await figures()) set({ channel: String(f.channelId) }, f.messagesStored);
  });
  // Running syncs only: a declined, completed or failed run waits for nothing from Meta, and its
  // last chunk's age must not read as a stall (failed chunks have their dead-letter alert).
  scrapeGauge(registry, 'wa_router_history_sync_last_applied_timestamp_seconds', 'When a running history sync last applied a chunk (its start before the first one), per channel', ['channel'], async (set) => {
    for (const f of await figures()) if (f.status === 'running') set({ channel: String(f.channelId) }, f.lastAppliedAt);
  });
}
