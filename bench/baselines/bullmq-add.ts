// Baseline: bare BullMQ Queue.add of the same body, 50 in flight, no HTTP, no batching.
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

export async function bareBullmqAdd(redisUrl: string, body: string, seconds: number, inFlight = 50): Promise<{ adds: number; perSecond: number }> {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('bench-bare-add', { connection, prefix: 'bench' });
  await queue.waitUntilReady();
  const deadline = Date.now() + seconds * 1000;
  let adds = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (Date.now() < deadline) {
        await queue.add('event', { events: [{ body, receivedAt: Date.now() }] }, { removeOnComplete: true });
        adds++;
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  await queue.obliterate({ force: true });
  await queue.close();
  await connection.quit();
  return { adds, perSecond: adds / elapsed };
}
