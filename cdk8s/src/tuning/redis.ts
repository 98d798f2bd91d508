// preset → redis.conf for the BullMQ store: durable (AOF everysec + RDB), never evicting.
import type { Machine } from './postgres.js';
import { GiB } from '../quantity.js';
import type { Preset } from '../presets.js';

export interface RedisConfOptions {
  /** @default 6379 */
  readonly port?: number;
  /** Data directory (AOF, RDB); omitted, the caller's own `dir` line applies. */
  readonly dir?: string;
  /** Omitted: the caller appends `requirepass`/`masterauth` itself (from a Secret at start-up). */
  readonly password?: string;
  readonly replicaOf?: { readonly host: string; readonly port: number };
  /** @default '0.0.0.0' (containers); the local stack binds loopback */
  readonly bind?: string;
  /** Hostname this Redis announces to Sentinels and replicas (pod DNS names survive restarts). */
  readonly announceHostname?: string;
  /** Size maxmemory and io-threads for another machine (the local stack). */
  readonly scaleTo?: Machine;
}

/** maxmemory for a machine: the preset's ratio of maxmemory to memory limit, applied to it. */
function maxmemoryFor(preset: Preset, scaleTo: Machine | undefined): string {
  if (!scaleTo) return preset.redis.maxmemory;
  const mb = Math.max(64, Math.floor((scaleTo.memoryGiB * GiB * 0.8) / 2 ** 20));
  return `${mb}mb`;
}

export function renderRedisConf(preset: Preset, opts: RedisConfOptions = {}): string {
  const r = preset.redis;
  const ioThreads = opts.scaleTo ? Math.max(1, Math.min(r.ioThreads, opts.scaleTo.cpuCores - 1)) : r.ioThreads;
  const lines: (string | false | undefined)[] = [
    `# redis.conf for the ${preset.name} preset, written by wa-router's tuning (do not edit: change the preset)`,
    `bind ${opts.bind ?? '0.0.0.0'}`,
    `port ${opts.port ?? 6379}`,
    'protected-mode yes',
    opts.dir !== undefined && `dir ${opts.dir}`,
    'daemonize no',
    '# Durability: every acked webhook is a BullMQ job; AOF fsync every second, RDB as a second copy.',
    'appendonly yes',
    'appendfsync everysec',
    'aof-use-rdb-preamble yes',
    'no-appendfsync-on-rewrite no',
    'save 900 1 300 10 60 10000',
    `maxmemory ${maxmemoryFor(preset, opts.scaleTo)}`,
    '# BullMQ keeps jobs as ordinary keys: any eviction policy would silently drop queued messages.',
    'maxmemory-policy noeviction',
    // Since Redis 8.0 the I/O threads read and parse too; io-threads-do-reads is a deprecated no-op.
    `io-threads ${ioThreads}`,
    'tcp-keepalive 60',
    'timeout 0',
    `client-output-buffer-limit replica ${r.outputBuffers.replica}`,
    `client-output-buffer-limit pubsub ${r.outputBuffers.pubsub}`,
    `repl-backlog-size ${r.replBacklogSize}`,
    'repl-diskless-sync yes',
    'replica-read-only yes',
    'slowlog-log-slower-than 10000',
    'slowlog-max-len 256',
    'latency-monitor-threshold 100',
    opts.announceHostname && `replica-announce-ip ${opts.announceHostname}`,
    opts.password !== undefined && `requirepass ${opts.password}`,
    opts.password !== undefined && `masterauth ${opts.password}`,
    opts.replicaOf && `replicaof ${opts.replicaOf.host} ${opts.replicaOf.port}`,
  ];
  return lines.filter((l): l is string => typeof l === 'string').join('\n') + '\n';
}


