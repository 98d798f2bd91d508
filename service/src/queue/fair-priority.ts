// Fairness on one queue shared by several numbers: a job's BullMQ priority is its position among
// its number's jobs (1, 2, 3, ...), so a second inbox's first history chunks run before the first
// inbox's 50th, and ten inboxes syncing at once progress together instead of one after another.
import type { Redis } from 'ioredis';

/** BullMQ's highest priority number (lower runs first). */
const MAX_PRIORITY = 2 ** 21 - 1;

/**
 * The counters live a day after their last job, so a number's later sync starts at 1 again.
 * @defaultValue 86,400 s
 */
const COUNTER_TTL_S = 86_400;

/** Where the history queue's per-number counters live. */
export const historySequenceKey = (queuePrefix: string, phoneNumberId: string) => `${queuePrefix}:history:seq:${phoneNumberId}`;

/**
 * One priority per key given (in order), taken from Redis counters in one round trip on `redis`
 * (the connection the jobs are then added on, so a later WAIT covers both).
 */
export async function fairPriorities(redis: Redis, counterKey: (key: string) => string, keys: readonly string[]): Promise<number[]> {
  const counts = new Map<string, number>();
  for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
  const multi = redis.multi();
  for (const [k, n] of counts) multi.incrby(counterKey(k), n).expire(counterKey(k), COUNTER_TTL_S);
  const replies = (await multi.exec()) ?? [];
  const next = new Map<string, number>();
  [...counts].forEach(([k, n], i) => {
    const [err, end] = replies[i * 2] ?? [new Error('no reply'), 0];
    if (err) throw err;
    next.set(k, (end as number) - n + 1);
  });
  return keys.map((k) => {
    const position = next.get(k)!;
    next.set(k, position + 1);
    return ((position - 1) % MAX_PRIORITY) + 1;
  });
}
