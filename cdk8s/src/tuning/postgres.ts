// preset → postgresql.conf. What the preset pins wins; the rest is derived from the container's
// limits the way PGTune does for a web/OLTP workload on SSDs.
import { cpuMillis, formatPg, GiB, memoryBytes, MiB } from '../quantity.js';
import type { Preset } from '../presets.js';

export interface Machine {
  readonly cpuCores: number;
  readonly memoryGiB: number;
}

export interface PostgresConfOptions {
  /** @default 5432 */
  readonly port?: number;
  /** @default '*' */
  readonly listenAddresses?: string;
  /**
   * Size for another machine (the local stack on a laptop): settings that follow memory or
   * CPU are derived from it instead of the preset's limits; pinned ones that do are dropped.
   */
  readonly scaleTo?: Machine;
  /** Extra lines appended last (the local stack's socket directory, for instance). */
  readonly extra?: Readonly<Record<string, string | number>>;
}

/** Settings that follow the machine's size: pinned values for them hold only at the preset's size. */
const RESOURCE_BOUND = new Set([
  'shared_buffers', 'effective_cache_size', 'maintenance_work_mem', 'work_mem', 'wal_buffers',
  'max_worker_processes', 'max_parallel_workers', 'max_parallel_workers_per_gather', 'max_parallel_maintenance_workers',
]);

/** PGTune's rules for a web application on SSD storage, from memory (bytes) and cores. */
export function derivePostgresSettings(memory: number, cores: number, maxConnections: number): Record<string, string | number> {
  const sharedBuffers = Math.floor(memory / 4);
  const perGather = Math.max(1, Math.min(4, Math.ceil(cores / 2)));
  // RAM not used by shared buffers, spread over every connection's ~3 sort/hash nodes and the
  // parallel workers each may start; never below Postgres' 64 kB minimum.
  const workMem = Math.max(64 * 1024, Math.floor((memory - sharedBuffers) / (maxConnections * 3) / perGather));
  return {
    shared_buffers: formatPg(roundTo(sharedBuffers, MiB)),
    effective_cache_size: formatPg(roundTo(Math.floor((memory * 3) / 4), MiB)),
    maintenance_work_mem: formatPg(roundTo(Math.min(2 * GiB, Math.floor(memory / 16)), MiB)),
    work_mem: formatPg(roundTo(workMem, 1024)),
    wal_buffers: formatPg(roundTo(Math.min(16 * MiB, Math.max(32 * 1024, Math.floor(sharedBuffers * 0.03))), 1024)),
    min_wal_size: '1GB',
    max_wal_size: '4GB',
    checkpoint_completion_target: 0.9,
    default_statistics_target: 100,
    random_page_cost: 1.1,
    effective_io_concurrency: 200,
    max_worker_processes: Math.max(8, cores),
    max_parallel_workers: Math.max(2, cores),
    max_parallel_workers_per_gather: perGather,
    max_parallel_maintenance_workers: perGather,
  };
}

function roundTo(n: number, unit: number): number {
  return Math.max(unit, Math.floor(n / unit) * unit);
}

/** The effective settings, in the order they are written, each with where it came from. */
export function postgresSettings(preset: Preset, opts: PostgresConfOptions = {}): { key: string; value: string | number; source: 'pinned' | 'derived' | 'toolkit' }[] {
  const pg = preset.postgres;
  const memory = opts.scaleTo ? opts.scaleTo.memoryGiB * GiB : memoryBytes(pg.resources.limits.memory);
  const cores = opts.scaleTo ? opts.scaleTo.cpuCores : Math.max(1, Math.round(cpuMillis(pg.resources.limits.cpu) / 1000));
  const out = new Map<string, { value: string | number; source: 'pinned' | 'derived' | 'toolkit' }>();
  for (const [key, value] of Object.entries(derivePostgresSettings(memory, cores, pg.maxConnections))) out.set(key, { value, source: 'derived' });
  for (const [key, value] of Object.entries(pg.settings)) {
    if (opts.scaleTo && RESOURCE_BOUND.has(key)) continue;
    out.set(key, { value, source: 'pinned' });
  }
  const toolkit: Record<string, string | number> = {
    listen_addresses: opts.listenAddresses ?? '*',
    port: opts.port ?? 5432,
    max_connections: pg.maxConnections,
    superuser_reserved_connections: Math.min(3, pg.reservedConnections),
    password_encryption: 'scram-sha-256',
    // Short statements only; a stuck client must not hold a PgBouncer server connection forever.
    idle_in_transaction_session_timeout: '60s',
    // How often autovacuum looks at each database (default 1min). The forwarding outbox
    // (forward_events, migration 027) is vacuumed once 5,000 dead rows pile up, which a busy
    // router reaches within seconds; until a vacuum runs, every claim steps over the delivered
    // events' dead entries in the pending index. A minute's wait let tens of thousands gather;
    // 10 s (premium's documented value) bounds that to a few thresholds. The launcher's check
    // costs one look at this database's table statistics per nap: nothing at this schema's size.
    autovacuum_naptime: '10s',
    log_min_duration_statement: (pg.settings['log_min_duration_statement'] as string | number | undefined) ?? '1s',
    log_checkpoints: 'on',
    log_lock_waits: 'on',
    log_temp_files: 0,
    track_io_timing: 'on',
    ...opts.extra,
  };
  for (const [key, value] of Object.entries(toolkit)) {
    if (out.get(key)?.source === 'pinned') continue;
    out.set(key, { value, source: 'toolkit' });
  }
  if (!out.has('wal_level')) out.set('wal_level', { value: 'replica', source: 'toolkit' });
  if (pg.streamingReplica) {
    out.set('max_wal_senders', { value: 10, source: 'toolkit' });
    out.set('hot_standby', { value: 'on', source: 'toolkit' });
    out.set('wal_keep_size', { value: '1GB', source: 'toolkit' });
  }
  return [...out].map(([key, v]) => ({ key, ...v }));
}

function confValue(v: string | number): string {
  // Bare only what postgresql.conf's lexer reads as one token: numbers (with a unit) and words.
  if (typeof v === 'number' || /^-?\d+(\.\d+)?([A-Za-z]+)?$/.test(v) || /^[A-Za-z_][A-Za-z0-9_]*$/.test(v)) return String(v);
  return `'${v.replace(/'/g, "''")}'`;
}

/** postgresql.conf text for a preset. Pure: same preset and options, same bytes. */
export function renderPostgresConf(preset: Preset, opts: PostgresConfOptions = {}): string {
  const lines = [`# postgresql.conf for the ${preset.name} preset, written by wa-router's tuning (do not edit: change the preset)`];
  const sized = opts.scaleTo ? `${opts.scaleTo.cpuCores} cores / ${opts.scaleTo.memoryGiB} GiB` : `${preset.postgres.resources.limits.cpu} CPU / ${preset.postgres.resources.limits.memory}`;
  lines.push(`# sized for ${sized}`);
  for (const s of postgresSettings(preset, opts)) lines.push(`${s.key} = ${confValue(s.value)}${s.source === 'pinned' ? '  # preset' : ''}`);
  return lines.join('\n') + '\n';
}

