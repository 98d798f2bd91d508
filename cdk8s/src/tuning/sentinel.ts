// preset → sentinel.conf. Sentinel rewrites its file at runtime, so callers write a copy.
import type { Preset } from '../presets.js';

export interface SentinelConfOptions {
  /** @default 26379 */
  readonly port?: number;
  /** @default 'wa-router' (the service's REDIS_MASTER_NAME default) */
  readonly masterName?: string;
  readonly masterHost: string;
  /** @default 6379 */
  readonly masterPort?: number;
  /** Omitted: the caller appends `sentinel auth-pass` itself (from a Secret at start-up). */
  readonly password?: string;
  /** @default the preset's */
  readonly quorum?: number;
  /** @default the preset's */
  readonly downAfterMs?: number;
  /** @default the preset's */
  readonly failoverTimeoutMs?: number;
  /** @default '/tmp' */
  readonly dir?: string;
  /** @default '0.0.0.0' */
  readonly bind?: string;
  /** This Sentinel's stable name (a pod DNS name); turns on hostname announcing. */
  readonly announceHostname?: string;
}

export function renderSentinelConf(preset: Preset, opts: SentinelConfOptions): string {
  const s = preset.redis.sentinel;
  const name = opts.masterName ?? 'wa-router';
  const lines: (string | false | undefined)[] = [
    `# sentinel.conf for the ${preset.name} preset, written by wa-router's tuning (Sentinel rewrites this copy)`,
    `bind ${opts.bind ?? '0.0.0.0'}`,
    `port ${opts.port ?? 26379}`,
    `dir ${opts.dir ?? '/tmp'}`,
    'daemonize no',
    'protected-mode no',
    // Pods come back with new IPs; DNS names are the identities that survive.
    'sentinel resolve-hostnames yes',
    opts.announceHostname ? 'sentinel announce-hostnames yes' : 'sentinel announce-hostnames no',
    opts.announceHostname && `sentinel announce-ip ${opts.announceHostname}`,
    `sentinel monitor ${name} ${opts.masterHost} ${opts.masterPort ?? 6379} ${opts.quorum ?? s.quorum}`,
    `sentinel down-after-milliseconds ${name} ${opts.downAfterMs ?? s.downAfterMs}`,
    `sentinel failover-timeout ${name} ${opts.failoverTimeoutMs ?? s.failoverTimeoutMs}`,
    // One replica resyncs at a time, so the others keep serving reads during a failover.
    `sentinel parallel-syncs ${name} 1`,
    opts.password !== undefined && `sentinel auth-pass ${name} ${opts.password}`,
  ];
  return lines.filter((l): l is string => typeof l === 'string').join('\n') + '\n';
}
