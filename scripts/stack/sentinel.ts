// Redis Sentinels of the version the presets deploy (scripts/stack/servers.ts) with the sentinel.conf the cdk8s tuning renders, on loopback.
import fs from 'node:fs';
import path from 'node:path';
import { presets, type PresetName } from '../../cdk8s/src/presets.js';
import { renderSentinelConf } from '../../cdk8s/src/tuning/sentinel.js';
import { LOOPBACK, portOpen, spawnDaemon, stopPid, waitFor } from './proc.js';
import { serverCommand } from './servers.js';

export interface SentinelOptions {
  readonly dir: string;
  readonly port: number;
  readonly masterPort: number;
  readonly password: string;
  /** @default 'wa-router' */
  readonly masterName?: string;
  /** Tests use short timeouts so a failover takes seconds. */
  readonly downAfterMs?: number;
  readonly failoverTimeoutMs?: number;
  /** @default 'standard' */
  readonly preset?: PresetName;
}

export interface SentinelHandle {
  readonly port: number;
  readonly pid: number;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

export async function startSentinel(opts: SentinelOptions): Promise<SentinelHandle> {
  fs.mkdirSync(opts.dir, { recursive: true });
  // Sentinel rewrites its config (known replicas, epochs): it gets its own writable copy.
  const confFile = path.join(opts.dir, 'sentinel.conf');
  fs.writeFileSync(confFile, renderSentinelConf(presets[opts.preset ?? 'standard'], {
    bind: LOOPBACK,
    port: opts.port,
    dir: opts.dir,
    masterName: opts.masterName,
    masterHost: LOOPBACK,
    masterPort: opts.masterPort,
    password: opts.password,
    downAfterMs: opts.downAfterMs,
    failoverTimeoutMs: opts.failoverTimeoutMs,
  }));
  const logFile = path.join(opts.dir, 'sentinel.log');
  const server = serverCommand('redis-sentinel', [confFile]);
  const proc = spawnDaemon(server.file, server.args, { logFile, pidFile: path.join(opts.dir, 'sentinel.pid.ours') });
  await waitFor('redis-sentinel', () => portOpen(opts.port), { pid: proc.pid, logFile, timeoutMs: 30_000 });
  return { port: opts.port, pid: proc.pid, stop: () => stopPid(proc.pid, 10_000, 'SIGTERM'), kill: () => stopPid(proc.pid, 0, 'SIGKILL') };
}
