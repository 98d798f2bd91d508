// At most N history downloads of one channel at once in a worker process, so one channel's
// backlog of history media (thousands of placeholders getting their ids, some 100 MB documents)
// cannot hold every slot while other channels' media wait behind it. Live media are not capped:
// they run first anyway (priority), and a channel alone on the worker keeps every slot for them.
// BullMQ's open-source queue has no per-group concurrency, so a job over its channel's cap is
// parked (delayed, no attempt spent) and woken when one of its channel's downloads ends; the
// delay is only the fallback for a process that died with parked jobs.
import { DelayedError, type Job, type Queue } from 'bullmq';
import type { Logger } from '../log.js';
import type { MediaJobData } from './download.js';

/**
 * A parked job comes back by itself after this, if nothing woke it (its worker died). Not much
 * shorter: every job of a long backlog is parked, and each comes back to be parked again.
 * @defaultValue 5 minutes
 */
const PARK_FALLBACK_MS = 5 * 60_000;

export function capPerChannel<T>(
  processor: (job: Job<MediaJobData>, token?: string) => Promise<T>,
  d: { cap: number; queue: Queue<MediaJobData>; log: Logger },
): (job: Job<MediaJobData>, token?: string) => Promise<T> {
  const active = new Map<number, number>();
  const parked = new Map<number, string[]>();

  const wake = async (channelId: number) => {
    const ids = parked.get(channelId);
    for (let id = ids?.shift(); id !== undefined; id = ids?.shift()) {
      const job = await d.queue.getJob(id);
      // Gone, or back already (woken by its fallback): try the next one.
      if (job && (await job.isDelayed())) {
        await job.promote();
        return;
      }
    }
    parked.delete(channelId);
  };

  return async (job, token) => {
    const { channelId, live } = job.data;
    if (channelId === undefined || live !== false) return processor(job, token);
    const running = active.get(channelId) ?? 0;
    if (running >= d.cap) {
      await job.moveToDelayed(Date.now() + PARK_FALLBACK_MS, token);
      if (job.id) parked.set(channelId, [...(parked.get(channelId) ?? []), job.id]);
      throw new DelayedError();
    }
    active.set(channelId, running + 1);
    try {
      return await processor(job, token);
    } finally {
      const left = (active.get(channelId) ?? 1) - 1;
      if (left > 0) active.set(channelId, left);
      else active.delete(channelId);
      void wake(channelId).catch((err: Error) => d.log.warn({ channelId, err: err.message }, 'parked media download not woken; it comes back by itself'));
    }
  };
}
