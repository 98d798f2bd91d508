// A real Redis of the version the presets deploy (scripts/stack/servers.ts): AOF everysec + RDB snapshots, noeviction, a password.
import fs from 'node:fs';
import path from 'node:path';
import { portOpen, spawnDaemon, stopPid, waitFor, LOOPBACK } from './proc.js';
import { serverCommand } from './servers.js';

export interface RedisOptions {
  readonly dir: string;
  readonly port: number;
  readonly password: string;
  /** Extra redis.conf text (the tuning rendered for a preset). */
  readonly conf?: string;
  /** `host port` of the master this one replicates. */
  readonly replicaOf?: { host: string; port: number };
  /** @default '256mb' */
  readonly maxmemory?: string;
}

export interface RedisHandle {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

/** The settings a BullMQ store needs, whatever the preset says on top. */
export function baseRedisConf(opts: RedisOptions): string {
  return [
    `bind ${LOOPBACK}`,
    `port ${opts.port}`,
    'protected-mode yes',
    `dir ${opts.dir}`,
    'daemonize no',
    `requirepass ${opts.password}`,
    `masterauth ${opts.password}`,
    'appendonly yes',
    'appendfsync everysec',
    'save 900 1 300 10 60 10000',
    `maxmemory ${opts.maxmemory ?? '256mb'}`,
    // BullMQ keeps jobs as ordinary keys: evicting them would silently lose messages.
    'maxmemory-policy noeviction',
    opts.replicaOf ? `replicaof ${opts.replicaOf.host} ${opts.replicaOf.port}` : '',
  ].join('\n');
}

export async function startRedis(opts: RedisOptions): Promise<RedisHandle> {
  fs.mkdirSync(opts.dir, { recursive: true });
  const confFile = path.join(opts.dir, 'redis.conf');
  // Preset tuning first, our invariants last so they win.
  fs.writeFileSync(confFile, `${opts.conf ?? ''}\n${baseRedisConf(opts)}\n`);
  const logFile = path.join(opts.dir, 'redis.log');
  const server = serverCommand('redis-server', [confFile]);
  const proc = spawnDaemon(server.file, server.args, { logFile, pidFile: path.join(opts.dir, 'redis.pid.ours') });
  await waitFor('redis', () => portOpen(opts.port), { pid: proc.pid, logFile, timeoutMs: 30_000 });
  return {
    url: `redis://:${encodeURIComponent(opts.password)}@${LOOPBACK}:${opts.port}`,
    port: opts.port,
    pid: proc.pid,
    stop: () => stopPid(proc.pid, 15_000, 'SIGTERM'),
    kill: () => stopPid(proc.pid, 0, 'SIGKILL'),
  };
}
