// One media download: Meta's metadata (a fresh, short-lived URL per try), the bytes streamed
// with the channel's token through a size and SHA-256 check straight into the store, and the
// outcome recorded on the media row. Permanent problems (unknown or expired media, a type or
// size Meta does not allow, bytes that do not match) end as `failed` with a reason, never as an
// endless retry; transient ones (5xx, timeouts, the store away) retry with backoff.
import { DelayedError, type Job } from 'bullmq';
import type { Publish } from '../events/hub.js';
import type { Logger } from '../log.js';
import { classifyGraphError } from '../whatsapp/errors.js';
import { isTransientDbError } from '../store/pool.js';
import { WriteCoalescer } from '../store/coalescer.js';
import type { GraphMediaClient } from './graph-media.js';
import type { MediaMetrics } from './metrics.js';
import { isMediaType, MAX_BYTES, mimeAllowed, type MediaType } from './meta-types.js';
import type { MediaOutcome, MediaRepo, MediaRow } from './repo.js';
import { keyForSha256, type MediaStore } from './store.js';
import { MediaCheckError, VerifyingStream } from './verify.js';

export interface MediaJobData {
  /** The media row. */
  readonly mediaId: number;
  /** Its channel and whether it is live, for the per-channel cap (jobs queued before it have neither: not capped). */
  readonly channelId?: number;
  readonly live?: boolean;
  /** Times the database refused the record of this job's final failure (for its backoff). */
  readonly failureWriteRetries?: number;
}

export interface DownloadDeps {
  readonly repo: MediaRepo;
  readonly store: MediaStore;
  readonly graph: GraphMediaClient;
  readonly metrics: MediaMetrics;
  readonly publish: Publish;
  readonly log: Logger;
  /** How long a download of a paused channel waits before it looks at the channel again. */
  readonly tokenPauseMs: number;
}

/** A URL that expired between the metadata and the download is fetched again this many times. */
const URL_REFETCHES = 3;

type Outcome = 'stored' | 'deduplicated' | 'skipped' | `failed:${string}`;

const hexOf = (sha: string | null): string | null => {
  if (!sha) return null;
  if (/^[0-9a-f]{64}$/i.test(sha)) return sha.toLowerCase();
  const hex = Buffer.from(sha, 'base64').toString('hex');
  return hex.length === 64 ? hex : null;
};

export function createDownloadProcessor(d: DownloadDeps) {
  // The jobs in flight share their statements: one to load their rows, one to look up stored
  // copies, one to record their outcomes (and one event message for all of them).
  const coalesce = <I, R>(write: (items: I[]) => Promise<R>) =>
    new WriteCoalescer<I, R>({ write, splitOn: (err) => !isTransientDbError(err), parallel: 1 });
  const loads = coalesce((ids: number[]) => d.repo.forDownload(ids));
  const copies = coalesce((hexes: string[]) => d.repo.storedKeysOf(hexes));
  const outcomes = coalesce(async (list: MediaOutcome[]) => {
    const changed = await d.repo.finish(list);
    d.publish(changed.filter((m) => m.messageId !== null).map((m) => ({ type: 'message.media', messageId: m.messageId!, conversationId: m.conversationId!, channelId: m.channelId, status: m.status })));
  });

  const fail = async (row: MediaRow, code: string, reason: string): Promise<Outcome> => {
    await outcomes.submit([{ id: row.id, status: 'failed', code, reason }]);
    return `failed:${code}`;
  };

  // Not an attempt spent: the job looks at its channel again later.
  const waitWhilePaused = async (job: Job<MediaJobData>): Promise<never> => {
    await job.moveToDelayed(Date.now() + d.tokenPauseMs, job.token);
    throw new DelayedError();
  };

  async function download(row: MediaRow & { metaId: string }, type: MediaType, token: string, job: Job<MediaJobData>): Promise<Outcome> {
    for (let attempt = 0; ; attempt++) {
      const info = await d.graph.info(row.metaId, token);
      if (!info.ok) {
        const e = info.error;
        if (e.httpStatus === 404 || e.code === 100) return fail(row, 'not_found', `Meta has no such media (it keeps media for a limited time): ${e.title}`);
        if (e.httpStatus === 401 || classifyGraphError(e) === 'pause_channel') {
          // Like a send: the channel's token is refused, so the channel is paused (its other
          // downloads and sends stop asking Meta) until an operator saves a new token.
          await d.repo.pauseChannel(row.channelId, `${e.code ?? e.httpStatus}: ${e.title}`);
          d.log.error({ mediaId: row.id, channelId: row.channelId, err: e.title }, 'channel paused: Meta refused its token for a media download');
          return waitWhilePaused(job);
        }
        throw new Error(`media metadata: HTTP ${e.httpStatus} ${e.code ?? ''} ${e.title}`.trim());
      }
      const { mimeType, fileSize, sha256, url } = info.value;
      if (!mimeAllowed(type, mimeType)) return fail(row, 'unsupported_mime', `${mimeType} is not a ${type} type Meta supports`);
      if (fileSize !== null && fileSize > MAX_BYTES[type]) return fail(row, 'too_large', `${fileSize} bytes, over Meta's ${MAX_BYTES[type]} for ${type}`);
      const declaredHex = hexOf(sha256);
      if (declaredHex) {
        const existing = (await copies.submit([declaredHex])).get(declaredHex);
        // Only an object that is there (a row can outlive its object), of the size its download
        // counted and of the size Meta declares, if it does.
        const size = existing ? await d.store.size(existing.key) : null;
        if (existing && size === existing.size && (fileSize === null || size === fileSize)) {
          await outcomes.submit([{ id: row.id, status: 'stored', key: existing.key, size, mimeType, sha256: declaredHex }]);
          return 'deduplicated';
        }
      }
      const res = await d.graph.download(url, token);
      if (!res.ok) {
        // An expired URL answers 404 (or 401/403): ask Meta for a fresh one.
        if ([401, 403, 404].includes(res.status) && attempt < URL_REFETCHES) continue;
        throw new Error(`media download: HTTP ${res.status}`);
      }
      const verify = new VerifyingStream({ maxBytes: MAX_BYTES[type], size: fileSize, sha256 });
      res.body.on('error', (err) => verify.destroy(err));
      // Past the limit or on a mismatch, stop reading from Meta at once.
      verify.on('error', () => res.body.destroy());
      const key = declaredHex ? keyForSha256(declaredHex) : `media/${row.id}`;
      try {
        await d.store.put(key, res.body.pipe(verify), mimeType, fileSize, declaredHex);
      } catch (err) {
        if (err instanceof MediaCheckError) return fail(row, err.code, err.message);
        if (!res.body.errored) d.metrics.storageErrors.inc({ op: 'put' });
        throw err;
      }
      d.metrics.bytes.inc({ type }, verify.count);
      await outcomes.submit([{ id: row.id, status: 'stored', key, size: verify.count, mimeType, sha256: verify.digest }]);
      return 'stored';
    }
  }

  return async (job: Job<MediaJobData>): Promise<Outcome> => {
    const row = (await loads.submit([job.data.mediaId])).get(job.data.mediaId);
    if (!row || row.status === 'stored' || !row.metaId) return 'skipped';
    if (!isMediaType(row.type)) return fail(row, 'unsupported_type', `${row.type} messages carry no downloadable media`);
    if (!row.accessToken) throw new Error(`channel ${row.channelId} has no access token`);
    if (row.pausedReason) return waitWhilePaused(job);
    const started = performance.now();
    const outcome = await download({ ...row, metaId: row.metaId }, row.type, row.accessToken, job);
    d.metrics.downloads.inc({ result: outcome.startsWith('failed:') ? outcome.slice(7) : outcome, type: row.type });
    if (outcome === 'stored') d.metrics.seconds.observe({ type: row.type }, (performance.now() - started) / 1000);
    return outcome;
  };
}
