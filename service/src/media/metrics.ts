// The media feature's metrics, on the app's one registry.
import client from 'prom-client';
import type { MediaRepo } from './repo.js';
import { scrapeGauge } from '../metrics/registry.js';

export interface MediaMetrics {
  readonly downloads: client.Counter<'result' | 'type'>;
  readonly bytes: client.Counter<'type'>;
  readonly seconds: client.Histogram<'type'>;
  readonly storageErrors: client.Counter<'op'>;
  /** A last attempt's failure the database refused to record: the job runs again after a backoff. */
  readonly failureWriteRetries: client.Counter;
}

export function createMediaMetrics(registry: client.Registry, repo: MediaRepo): MediaMetrics {
  // One query per scrape; pending live and history media per channel.
  scrapeGauge(registry, 'wa_router_media_backlog', 'Media waiting to be downloaded, per channel and kind (live, history)', ['channel', 'kind'], async (set) => {
    for (const r of await repo.backlog()) set({ channel: String(r.channelId), kind: r.live ? 'live' : 'history' }, r.n);
  });
  return {
    downloads: new client.Counter({ name: 'wa_router_media_downloads_total', help: 'Media downloads by result (stored, deduplicated, failed reason, retried) and media type', labelNames: ['result', 'type'], registers: [registry] }),
    bytes: new client.Counter({ name: 'wa_router_media_bytes_total', help: 'Media bytes written to the store, by media type', labelNames: ['type'], registers: [registry] }),
    seconds: new client.Histogram({ name: 'wa_router_media_download_seconds', help: 'One media download, metadata to stored', labelNames: ['type'], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers: [registry] }),
    storageErrors: new client.Counter({ name: 'wa_router_media_storage_errors_total', help: 'Object store operations that failed, by operation', labelNames: ['op'], registers: [registry] }),
    failureWriteRetries: new client.Counter({ name: 'wa_router_media_failure_write_retries_total', help: "Downloads run again because the database refused to record their last attempt's failure", registers: [registry] }),
  };
}
