// The worker side of media: a poller that queues every pending download (live before history,
// history fair across channels) and the download worker itself.
import { DelayedError, UnrecoverableError, Worker, type Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config/env.js';
import type { Metrics } from '../metrics/registry.js';
import { fairPriorities } from '../queue/fair-priority.js';
import { createRedis, WORKER_RUN_RETRY_MS } from '../queue/redis.js';
import { isTransientDbError } from '../store/pool.js';
import { capPerChannel } from './channel-cap.js';
import { createDownloadProcessor, type DownloadDeps, type MediaJobData } from './download.js';

export const MEDIA_QUEUE = 'media';

/** Rows claimed per poll. */
const CLAIM_BATCH = 500;
/** A claimed row whose job may have been lost (a crash between claim and enqueue) is queued again after this. */
const REQUEUE_AFTER_MS = 10 * 60_000;
/** The longest wait before a download whose failure the database keeps refusing runs again (unless MEDIA_BACKOFF_MS is longer). */
const FAILURE_WRITE_MAX_DELAY_MS = 60_000;

/** The n-th (from 0) wait before a job whose failure was not recorded runs again: doubling from `backoffMs`, capped. */
export const failureWriteDelay = (backoffMs: number, n: number) => Math.min(backoffMs * 2 ** Math.min(n, 30), Math.max(backoffMs, FAILURE_WRITE_MAX_DELAY_MS));

export const mediaJobOptions = (config: Config) => ({
  attempts: config.MEDIA_ATTEMPTS,
  backoff: { type: 'exponential', delay: config.MEDIA_BACKOFF_MS },
  removeOnComplete: { age: 3_600, count: 1_000 },
  removeOnFail: false,
});

export function startMediaWorker(d: DownloadDeps & { config: Config; redis: Redis; queue: Queue<MediaJobData>; jobs: Metrics['jobs'] }): { close(): Promise<void> } {
  const { config, log } = d;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  // A job that failed for good is kept under its id, so adding it again does nothing: a row still
  // pending when claimed again, whose job is a dead letter (the failed handler's write was lost),
  // is recorded failed here, with the job's reason.
  const recordDeadLetters = async (ids: readonly number[]) => {
    for (const id of ids) {
      const job = await d.queue.getJob(`m${id}`);
      if (job && (await job.isFailed())) await d.repo.markFailed(id, 'download_failed', job.failedReason);
    }
  };
  const poll = async () => {
    try {
      for (;;) {
        const rows = await d.repo.claimToEnqueue(CLAIM_BATCH, REQUEUE_AFTER_MS);
        if (rows.length === 0) break;
        await recordDeadLetters(rows.filter((r) => r.requeued).map((r) => r.id));
        const history = rows.filter((r) => !r.live);
        const fair = await fairPriorities(d.redis, (ch) => `${config.QUEUE_PREFIX}:media:seq:${ch}`, history.map((r) => String(r.channelId)));
        const priority = new Map(history.map((r, i) => [r.id, 1 + fair[i]!]));
        try {
          await d.queue.addBulk(rows.map((r) => ({ name: 'download', data: { mediaId: r.id, channelId: r.channelId, live: r.live }, opts: { ...mediaJobOptions(config), jobId: `m${r.id}`, priority: priority.get(r.id) ?? 1 } })));
        } catch (err) {
          await d.repo.unclaim(rows.map((r) => r.id));
          throw err;
        }
        if (rows.length < CLAIM_BATCH) break;
      }
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'media downloads not queued yet; retrying');
    }
    if (!stopped) timer = setTimeout(() => void poll(), config.MEDIA_POLL_MS);
  };
  void poll();

  // A worker killed mid-download leaves its temp file; one untouched for a download's idle timeout
  // is no live download's (each chunk resets it), whichever worker wrote it.
  let sweeper: NodeJS.Timeout | undefined;
  const sweep = async () => {
    try {
      const removed = await d.store.removeStale(config.MEDIA_TIMEOUT_MS);
      if (removed > 0) log.info({ removed }, 'removed temp files of interrupted media writes');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'media temp files not swept');
    }
    if (!stopped) sweeper = setTimeout(() => void sweep(), config.MEDIA_TIMEOUT_MS);
  };
  void sweep();

  const download = createDownloadProcessor(d);
  // The last attempt's failure is written before the job becomes a dead letter, not after it (a
  // write lost there left the row pending until the poller claimed it again, 10 minutes later).
  // When the database cannot take it just then, the job is not spent: it runs again after a
  // backoff that doubles while the database keeps refusing (up to a minute), and may store the
  // media, or fail and write it then.
  const recordingFailure = async (job: Job<MediaJobData>) => {
    try {
      return await download(job);
    } catch (err) {
      const final = err instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      if (!final || err instanceof DelayedError) throw err;
      try {
        await d.repo.markFailed(job.data.mediaId, 'download_failed', (err as Error).message);
      } catch (writeErr) {
        if (!isTransientDbError(writeErr)) throw err;
        const n = job.data.failureWriteRetries ?? 0;
        const delayMs = failureWriteDelay(config.MEDIA_BACKOFF_MS, n);
        d.metrics.failureWriteRetries.inc();
        log.warn({ mediaId: job.data.mediaId, err: (writeErr as Error).message, retries: n + 1, delayMs }, 'media failure not recorded yet; the download runs again');
        await job.updateData({ ...job.data, failureWriteRetries: n + 1 });
        await job.moveToDelayed(Date.now() + delayMs, job.token);
        throw new DelayedError();
      }
      throw err;
    }
  };
  const processor = capPerChannel(recordingFailure, { cap: config.MEDIA_CHANNEL_CONCURRENCY, queue: d.queue, log });
  const worker = new Worker<MediaJobData>(MEDIA_QUEUE, processor, {
    connection: createRedis(config, 'worker'),
    prefix: config.QUEUE_PREFIX,
    concurrency: config.MEDIA_CONCURRENCY,
    // Downloads are idempotent (content-addressed keys, a conditional status update): a job of a
    // killed worker simply runs again.
    maxStalledCount: 10,
    lockDuration: config.WORKER_LOCK_MS,
    stalledInterval: config.WORKER_LOCK_MS,
    runRetryDelay: WORKER_RUN_RETRY_MS,
  });
  worker.on('completed', (job) => d.jobs.processed.inc({ queue: job.queueName, result: 'completed' }));
  worker.on('failed', (job, err) => {
    if (!job) return;
    const final = err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
    d.jobs.processed.inc({ queue: job.queueName, result: final ? 'dead_lettered' : 'retried' });
    if (!final) return d.metrics.downloads.inc({ result: 'retried', type: 'unknown' });
    log.error({ jobId: job.id, attemptsMade: job.attemptsMade, err: err.message }, 'media download dead-lettered');
    // Its row says failed already (recordingFailure); after a crash between the two, the poller
    // records it once it claims the still-pending row again.
    d.metrics.downloads.inc({ result: 'dead_lettered', type: 'unknown' });
  });
  worker.on('error', (err) => log.warn({ err: err.message }, 'media worker error'));
  return {
    async close() {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(sweeper);
      await worker.close();
      await worker.disconnect().catch(() => undefined);
    },
  };
}
