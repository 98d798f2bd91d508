// Queue and Redis gauges, read at scrape time: what the dashboards and alerts ask of the backlog
// (depth, age of the oldest waiting job) and of Redis's health (replicas, a changed master).
import client from 'prom-client';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { scrapeGauge, type Registry } from '../metrics/registry.js';
import { onlineReplicas } from './ingest-producer.js';
import type { Pool } from '../store/pool.js';

export interface QueueGaugeDeps {
  readonly registry: Registry;
  readonly redis: Redis;
  readonly pool: Pool;
  readonly queues: () => Queue[];
}

export function registerQueueGauges({ registry, redis, pool, queues }: QueueGaugeDeps): void {
  scrapeGauge(registry, 'wa_router_queue_jobs', 'Jobs per queue and state', ['queue', 'state'], async (set) => {
    for (const q of queues()) {
      const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'prioritized');
      for (const [state, n] of Object.entries(counts)) set({ queue: q.name, state }, n);
    }
  });
  scrapeGauge(registry, 'wa_router_queue_oldest_job_seconds', 'Age of the job that has waited longest to start, per queue (0 when none waits)', ['queue'], async (set) => {
    const now = Date.now();
    for (const q of queues()) {
      // BullMQ pushes on the left and takes from the right: the wait list's last entry is the oldest;
      // prioritized jobs (history) wait in a sorted set whose first entry runs next.
      const [oldest, next] = await Promise.all([redis.lindex(q.keys.wait!, -1), redis.zrange(q.keys.prioritized!, '0', '0')]);
      const stamps = await Promise.all([oldest, next[0]].filter((id): id is string => !!id).map((id) => redis.hget(q.toKey(id), 'timestamp')));
      const created = stamps.map(Number).filter((t) => t > 0);
      set({ queue: q.name }, created.length ? Math.max(0, now - Math.min(...created)) / 1000 : 0);
    }
  });

  // A different master run_id than at the previous scrape: Sentinel promoted a replica, or the
  // master restarted (and may have lost its last second of writes). Either deserves a look.
  const masterChanges = new client.Counter({ name: 'wa_router_redis_master_changes_total', help: 'Times this process found a different Redis master than at its previous scrape (a failover or a master restart)', registers: [registry] });
  let masterRunId: string | undefined;
  scrapeGauge(registry, 'wa_router_redis_connected_replicas', 'Replicas connected to the Redis master this process writes to', [], async (set) => {
    const info = parseInfo(String(await redis.call('INFO', 'server', 'replication')));
    if (info['role'] !== 'master') return;
    const runId = info['run_id'];
    if (masterRunId && runId && runId !== masterRunId) masterChanges.inc();
    masterRunId = runId;
    set({}, Number(info['connected_slaves'] ?? 0));
  });
  // A replica can stay connected without ever being in sync (a full resync failing in a loop):
  // replicated acks count only the online ones, and so does the alert.
  scrapeGauge(registry, 'wa_router_redis_online_replicas', 'Replicas in sync (state=online) with the Redis master this process writes to', [], async (set) => {
    const info = await redis.info('replication');
    if (!/^role:master\b/m.test(info)) return;
    set({}, onlineReplicas(info));
  });

  scrapeGauge(registry, 'wa_router_channels_paused', 'Channels whose sends are paused (Meta rejected the access token or the account); their messages wait', [], async (set) => {
    const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM channels WHERE paused_reason IS NOT NULL');
    set({}, rows[0]?.n ?? 0);
  });
}

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}
