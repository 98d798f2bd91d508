// A preset (or a user's overrides of one) is checked before anything is synthesized: first its
// shape, then whether its numbers agree with each other. Every problem names the field to change.
import { z } from 'zod';
import { cpuMillis, GiB, memoryBytes, MiB, pgBytes, redisBytes } from './quantity.js';
import { isPresetName, presets, PRESET_NAMES, type Preset, type PresetName, type Resources } from './presets.js';
import { ROLLOUT } from './rollout.js';

export interface ValidationIssue {
  /** Dotted path of the preset field to change, e.g. `pgbouncer.maxClientConn`. */
  readonly field: string;
  readonly message: string;
}

export class PresetValidationError extends Error {
  override readonly name = 'PresetValidationError';
  constructor(
    readonly preset: string,
    readonly issues: readonly ValidationIssue[],
  ) {
    super(`preset ${preset} is inconsistent:\n${issues.map((i) => `  ${i.field}: ${i.message}`).join('\n')}`);
  }
}

/** Deep partial: what an overrides file may contain. */
export type PresetOverrides = { readonly [K in keyof Preset]?: Overrides<Preset[K]> };
type Overrides<T> = T extends readonly unknown[] ? T : T extends object ? { readonly [K in keyof T]?: Overrides<T[K]> } : T;

const cpu = z.union([z.string(), z.number()]).refine((v) => safe(() => cpuMillis(v) > 0), 'expected a CPU quantity such as "500m" or "2"');
const memory = z.string().refine((v) => safe(() => memoryBytes(v) > 0), 'expected a memory quantity such as "512Mi" or "2Gi"');
const amounts = z.strictObject({ cpu, memory });
const resources = z.strictObject({ requests: amounts, limits: amounts });
const count = (min: number, max: number) => z.number().int().min(min).max(max);
const redisSize = z.string().refine((v) => safe(() => redisBytes(v) > 0), 'expected a Redis size such as "4gb"');
const buffers = z.string().regex(/^\d+[kmg]?b? \d+[kmg]?b? \d+$/i, 'expected "hard soft seconds", e.g. "512mb 128mb 60"');

const appTier = {
  replicas: count(1, 100),
  maxReplicas: count(1, 200),
  targetCpuUtilization: count(10, 100),
  resources,
};

export const presetSchema = z.strictObject({
  name: z.string().min(1),
  purpose: z.string(),
  targets: z.strictObject({ webhooksPerSecond: z.number().positive(), historySync: z.string(), webhookP99Ms: z.number().positive() }),
  nodePool: z.strictObject({
    nodes: count(1, 1000),
    cpuCores: z.number().positive(),
    memoryGiB: z.number().positive(),
    allocatable: z.strictObject({ cpuCores: z.number().positive(), memoryGiB: z.number().positive() }),
    daemonSets: amounts,
  }),
  web: z.strictObject({ ...appTier, dbPoolMax: count(1, 500) }),
  worker: z.strictObject({
    ...appTier,
    concurrency: count(1, 1000),
    keda: z.strictObject({ enabled: z.boolean(), queueDepthPerReplica: count(1, 10_000_000) }),
  }),
  redis: z.strictObject({
    replicas: count(0, 10),
    maxmemory: redisSize,
    storage: memory,
    ioThreads: count(1, 128),
    outputBuffers: z.strictObject({ replica: buffers, pubsub: buffers }),
    replBacklogSize: redisSize,
    resources,
    sentinel: z.strictObject({
      replicas: count(1, 9),
      quorum: count(1, 9),
      downAfterMs: count(100, 600_000),
      failoverTimeoutMs: count(1_000, 3_600_000),
      resources,
    }),
  }),
  pgbouncer: z.strictObject({
    replicas: count(1, 50),
    poolMode: z.enum(['transaction', 'session']),
    maxClientConn: count(1, 100_000),
    defaultPoolSize: count(1, 10_000),
    reservePoolSize: count(0, 10_000),
    maxDbConnections: count(1, 10_000),
    serverIdleTimeout: count(0, 86_400),
    resources,
  }),
  postgres: z.strictObject({
    mode: z.enum(['statefulset', 'external']),
    external: z.strictObject({ host: z.string().min(1), port: count(1, 65_535), database: z.string().min(1) }).optional(),
    storage: memory,
    streamingReplica: z.boolean(),
    maxConnections: count(5, 100_000),
    reservedConnections: count(1, 1_000),
    settings: z.record(z.string().regex(/^[a-z_][a-z0-9_.]*$/, 'expected a postgresql.conf parameter name'), z.union([z.string(), z.number()])),
    resources,
  }),
  images: z.strictObject({ postgres: z.string().min(1), redis: z.string().min(1), pgbouncer: z.string().min(1) }),
  monitoring: z.strictObject({
    prometheusOperator: z.boolean(),
    inboundBacklogSeconds: z.number().positive(),
    historyStallMinutes: count(1, 24 * 60),
    areaBacklogSeconds: z.number().positive(),
    extraLabels: z.record(
      z.string().regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/, 'expected a Kubernetes label key (optional DNS prefix/, then a name of at most 63 characters)'),
      z.string().regex(/^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/, 'expected a Kubernetes label value (at most 63 characters: letters, digits, -, _ and .)'),
    ),
  }),
  media: z.strictObject({
    bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name'),
    region: z.string().min(1),
    endpoint: z.url().optional(),
    forcePathStyle: z.boolean(),
    concurrency: count(1, 500),
    channelConcurrency: count(1, 500),
    publicUrl: z.url().optional(),
    urlTtlSeconds: count(1, 7 * 86_400),
    s3Redirect: z.boolean(),
  }),
});

function safe(fn: () => boolean): boolean {
  try {
    return fn();
  } catch {
    return false;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Overrides merged into a preset: objects deeply, anything else (arrays included) replaced. */
export function mergeOverrides<T>(base: T, overrides: unknown): T {
  if (!isObject(base) || !isObject(overrides)) return (overrides === undefined ? base : overrides) as T;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(overrides)) out[k] = k in out ? mergeOverrides(out[k], v) : v;
  return out as T;
}

/** The pods a preset runs at its HPA ceilings, with their requests: what the node pool must hold. */
export function peakPods(p: Preset): { component: string; count: number; resources: Resources; field: string }[] {
  const pods = [
    { component: 'web', count: p.web.maxReplicas, resources: p.web.resources, field: 'web.resources' },
    { component: 'worker', count: p.worker.maxReplicas, resources: p.worker.resources, field: 'worker.resources' },
    { component: 'redis', count: 1 + p.redis.replicas, resources: p.redis.resources, field: 'redis.resources' },
    { component: 'sentinel', count: p.redis.sentinel.replicas, resources: p.redis.sentinel.resources, field: 'redis.sentinel.resources' },
    { component: 'pgbouncer', count: p.pgbouncer.replicas, resources: p.pgbouncer.resources, field: 'pgbouncer.resources' },
    { component: 'migrate', count: 1, resources: MIGRATE_RESOURCES, field: 'web.resources' },
  ];
  if (p.postgres.mode === 'statefulset') {
    pods.push({ component: 'postgres', count: p.postgres.streamingReplica ? 2 : 1, resources: p.postgres.resources, field: 'postgres.resources' });
  }
  return pods;
}

/**
 * The extra pods a rollout adds at the HPA ceilings: each Deployment's `maxSurge` (ROLLOUT), all
 * at once, since one apply can change web, worker and PgBouncer together. `make deploy` waits for
 * the migration Job before it applies the Deployments, so the Job and the surge never overlap.
 */
export function surgePods(p: Preset): { component: string; count: number; resources: Resources; field: string }[] {
  return [
    { component: 'web', count: ROLLOUT.web.maxSurge, resources: p.web.resources, field: 'web.resources' },
    { component: 'worker', count: ROLLOUT.worker.maxSurge, resources: p.worker.resources, field: 'worker.resources' },
    { component: 'pgbouncer', count: ROLLOUT.pgbouncer.maxSurge, resources: p.pgbouncer.resources, field: 'pgbouncer.resources' },
  ].filter((s) => s.count > 0);
}

/** Requests the pool must hold at the HPA ceilings during a rollout, DaemonSets included (millicores, bytes). */
export function rolloutDemand(p: Preset): { cpu: number; memory: number; explain: string } {
  const sum = (pods: { count: number; resources: Resources }[]) => pods.reduce(
    (acc, pod) => ({ cpu: acc.cpu + pod.count * cpuMillis(pod.resources.requests.cpu), memory: acc.memory + pod.count * memoryBytes(pod.resources.requests.memory) }),
    { cpu: 0, memory: 0 },
  );
  const steady = sum(peakPods(p).filter((pod) => pod.component !== 'migrate'));
  const migrate = sum([{ count: 1, resources: MIGRATE_RESOURCES }]);
  const surge = sum(surgePods(p));
  const ds = p.nodePool.daemonSets;
  return {
    cpu: steady.cpu + Math.max(migrate.cpu, surge.cpu) + p.nodePool.nodes * cpuMillis(ds.cpu),
    memory: steady.memory + Math.max(migrate.memory, surge.memory) + p.nodePool.nodes * memoryBytes(ds.memory),
    explain: 'every pod at the HPA ceilings, the rollout surge (or the migration Job before it) and the DaemonSets on every node',
  };
}

/** The migration Job is short and light; a fixed size keeps presets focused on what runs. */
export const MIGRATE_RESOURCES: Resources = { requests: { cpu: '100m', memory: '256Mi' }, limits: { cpu: '500m', memory: '512Mi' } };

/**
 * Memory Redis needs beyond `maxmemory`, as a fraction of it: the fork of an AOF rewrite or RDB
 * save copies every page written while it runs (Redis documents up to 2× under heavy writes;
 * BullMQ rewrites a fraction of its keys in the seconds a rewrite takes), plus allocator
 * fragmentation. The replicas' output buffers come on top.
 */
export const REDIS_FORK_HEADROOM = 0.5;

/** The smallest Redis memory limit at which Redis answers `noeviction` before the kernel OOM-kills it. */
export function redisMemoryFloor(p: Preset): { bytes: number; explain: string } {
  const maxmem = redisBytes(p.redis.maxmemory);
  const buffer = p.redis.outputBuffers.replica.split(' ')[0]!;
  return {
    bytes: maxmem + p.redis.replicas * redisBytes(buffer) + Math.ceil(maxmem * REDIS_FORK_HEADROOM),
    explain: `maxmemory ${p.redis.maxmemory} + ${p.redis.replicas} × replica output buffer ${buffer} + ${REDIS_FORK_HEADROOM * 100}% for fork copy-on-write and fragmentation`,
  };
}

/** Client connections PgBouncer must accept when every tier is at its HPA ceiling. */
export function peakClientConnections(p: Preset): { total: number; explain: string } {
  const worker = p.worker.maxReplicas * p.worker.concurrency;
  const web = p.web.maxReplicas * p.web.dbPoolMax;
  return { total: worker + web + 1, explain: `worker ${p.worker.maxReplicas} × ${p.worker.concurrency} + web ${p.web.maxReplicas} × ${p.web.dbPoolMax} + migrate 1` };
}

function consistency(p: Preset): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const add = (field: string, message: string) => issues.push({ field, message });

  for (const [field, r] of [
    ['web.resources', p.web.resources],
    ['worker.resources', p.worker.resources],
    ['redis.resources', p.redis.resources],
    ['redis.sentinel.resources', p.redis.sentinel.resources],
    ['pgbouncer.resources', p.pgbouncer.resources],
    ['postgres.resources', p.postgres.resources],
  ] as const) {
    if (cpuMillis(r.requests.cpu) > cpuMillis(r.limits.cpu)) add(`${field}.requests.cpu`, `request ${r.requests.cpu} exceeds the limit ${r.limits.cpu}`);
    if (memoryBytes(r.requests.memory) > memoryBytes(r.limits.memory)) add(`${field}.requests.memory`, `request ${r.requests.memory} exceeds the limit ${r.limits.memory}`);
  }
  if (p.media.channelConcurrency > p.media.concurrency) add('media.channelConcurrency', `${p.media.channelConcurrency} per channel exceeds the ${p.media.concurrency} downloads of a worker pod (media.concurrency): it would cap nothing`);
  if (p.media.publicUrl && !/^https?:$/.test(new URL(p.media.publicUrl).protocol)) add('media.publicUrl', `${p.media.publicUrl} is not an http(s) origin: media links would not open`);
  for (const tier of ['web', 'worker'] as const) {
    if (p[tier].replicas > p[tier].maxReplicas) add(`${tier}.replicas`, `${p[tier].replicas} replicas exceed the HPA ceiling maxReplicas ${p[tier].maxReplicas}`);
  }

  const clients = peakClientConnections(p);
  if (clients.total > p.pgbouncer.maxClientConn) {
    add('pgbouncer.maxClientConn', `${clients.total} client connections at the HPA ceilings (${clients.explain}) exceed max_client_conn ${p.pgbouncer.maxClientConn}; raise it or lower worker.concurrency, web.dbPoolMax or the maxReplicas`);
  }
  const b = p.pgbouncer;
  if (b.defaultPoolSize + b.reservePoolSize > b.maxDbConnections) {
    add('pgbouncer.reservePoolSize', `default_pool_size ${b.defaultPoolSize} + reserve_pool_size ${b.reservePoolSize} exceed max_db_connections ${b.maxDbConnections}: the reserve could never open`);
  }
  const usable = p.postgres.maxConnections - p.postgres.reservedConnections;
  const server = b.replicas * Math.min(b.maxDbConnections, b.defaultPoolSize + b.reservePoolSize);
  if (server > usable) {
    add('postgres.maxConnections', `PgBouncer opens up to ${server} server connections (${b.replicas} pods × (default_pool_size ${b.defaultPoolSize} + reserve_pool_size ${b.reservePoolSize})) but Postgres has ${usable} (max_connections ${p.postgres.maxConnections} − ${p.postgres.reservedConnections} reserved)`);
  } else if (b.replicas * b.maxDbConnections > usable) {
    add('pgbouncer.maxDbConnections', `${b.replicas} pods × max_db_connections ${b.maxDbConnections} exceed the ${usable} connections Postgres can give (max_connections ${p.postgres.maxConnections} − ${p.postgres.reservedConnections} reserved)`);
  }

  // Hard limit 0 means unlimited: a replica's buffer through a full resync could grow past any
  // memory limit, so the floor below would count nothing for it.
  if (redisBytes(p.redis.outputBuffers.replica.split(' ')[0]!) === 0) {
    add('redis.outputBuffers.replica', `the replica output buffer hard limit is 0 (unlimited) in "${p.redis.outputBuffers.replica}": no memory limit holds it through a full resync; set a size, e.g. "512mb 128mb 60"`);
  }
  const redisFloor = redisMemoryFloor(p);
  if (memoryBytes(p.redis.resources.limits.memory) < redisFloor.bytes) {
    add('redis.resources.limits.memory', `the Redis memory limit ${p.redis.resources.limits.memory} is below ${Math.ceil(redisFloor.bytes / MiB)}Mi (${redisFloor.explain}): a fork under writes would OOM-kill the master instead of Redis answering noeviction; raise the limit or lower redis.maxmemory`);
  }
  if (p.redis.replicas < 1) {
    add('redis.replicas', 'at least 1 replica: Sentinel has nothing to promote without one, and replicated acks (WAIT) would never be confirmed');
  }
  const s = p.redis.sentinel;
  if (s.replicas < 3) add('redis.sentinel.replicas', `${s.replicas} Sentinels cannot agree on a failover after losing one; run at least 3`);
  if (s.quorum > s.replicas || s.quorum < Math.floor(s.replicas / 2) + 1) {
    add('redis.sentinel.quorum', `quorum ${s.quorum} must be a majority of the ${s.replicas} Sentinels (${Math.floor(s.replicas / 2) + 1}..${s.replicas})`);
  }
  if (s.failoverTimeoutMs < 2 * s.downAfterMs) add('redis.sentinel.failoverTimeoutMs', `failover timeout ${s.failoverTimeoutMs} ms should be at least twice down-after ${s.downAfterMs} ms`);

  const pg = p.postgres;
  if (pg.mode === 'external' && !pg.external) add('postgres.external', 'mode "external" needs host, port and database of the existing Postgres');
  const sb = pg.settings['shared_buffers'];
  if (typeof sb === 'string' && safe(() => pgBytes(sb) > 0) && pg.mode === 'statefulset') {
    if (pgBytes(sb) > memoryBytes(pg.resources.limits.memory) * 0.4) add('postgres.settings.shared_buffers', `shared_buffers ${sb} is more than 40% of the Postgres memory limit ${pg.resources.limits.memory}`);
  }
  for (const key of ['max_connections', 'port', 'listen_addresses', 'hba_file', 'data_directory']) {
    if (key in pg.settings) add(`postgres.settings.${key}`, `${key} is set by the toolkit${key === 'max_connections' ? ' from postgres.maxConnections' : ''}; do not pin it in settings`);
  }

  const node = p.nodePool.allocatable;
  const pool = p.nodePool;
  const ds = pool.daemonSets;
  const free = { cpu: node.cpuCores * 1000 - cpuMillis(ds.cpu), memory: node.memoryGiB * GiB - memoryBytes(ds.memory) };
  for (const pod of peakPods(p)) {
    if (cpuMillis(pod.resources.requests.cpu) > free.cpu) add(`${pod.field}.requests.cpu`, `one ${pod.component} pod requests ${pod.resources.requests.cpu} CPU, more than a node's allocatable ${node.cpuCores} less its DaemonSets' ${ds.cpu}`);
    if (memoryBytes(pod.resources.requests.memory) > free.memory) add(`${pod.field}.requests.memory`, `one ${pod.component} pod requests ${pod.resources.requests.memory}, more than a node's allocatable ${node.memoryGiB} GiB less its DaemonSets' ${ds.memory}`);
  }
  const demand = rolloutDemand(p);
  if (demand.cpu > pool.nodes * node.cpuCores * 1000) {
    add('nodePool.allocatable.cpuCores', `the pods request ${(demand.cpu / 1000).toFixed(2)} CPU (${demand.explain}) but the pool has ${pool.nodes} × ${node.cpuCores} allocatable: a rollout at the ceilings would stall with its surge pod Pending`);
  }
  if (demand.memory > pool.nodes * node.memoryGiB * GiB) {
    add('nodePool.allocatable.memoryGiB', `the pods request ${(demand.memory / GiB).toFixed(2)} GiB (${demand.explain}) but the pool has ${pool.nodes} × ${node.memoryGiB} GiB allocatable: a rollout at the ceilings would stall with its surge pod Pending`);
  }
  if (node.cpuCores > pool.cpuCores) add('nodePool.allocatable.cpuCores', `allocatable ${node.cpuCores} exceeds the node's ${pool.cpuCores} cores`);
  if (node.memoryGiB > pool.memoryGiB) add('nodePool.allocatable.memoryGiB', `allocatable ${node.memoryGiB} GiB exceeds the node's ${pool.memoryGiB} GiB`);
  return issues;
}

/** Shape and consistency problems of a whole preset; empty when it can be synthesized. */
export function validatePreset(candidate: unknown): ValidationIssue[] {
  const parsed = presetSchema.safeParse(candidate);
  if (!parsed.success) {
    return parsed.error.issues.map((i) => {
      const keys = i.code === 'unrecognized_keys' ? i.keys : [];
      const base = i.path.map(String).join('.');
      if (keys.length) return { field: keys.map((k) => (base ? `${base}.${k}` : k)).join(', '), message: `unknown field${keys.length > 1 ? 's' : ''}` };
      return { field: base || '(preset)', message: i.message };
    });
  }
  return consistency(parsed.data as Preset);
}

/**
 * A preset by name with the user's overrides applied, checked.
 * @throws PresetValidationError naming every field that is wrong or inconsistent
 */
export function resolvePreset(name: string, overrides?: PresetOverrides | Record<string, unknown>): Preset {
  if (!isPresetName(name)) {
    throw new PresetValidationError(name, [{ field: 'preset', message: `unknown preset ${JSON.stringify(name)}; choose one of ${PRESET_NAMES.join(', ')}` }]);
  }
  const merged = mergeOverrides<Preset>(presets[name as PresetName], overrides ?? {});
  const issues = validatePreset(merged);
  if (issues.length) throw new PresetValidationError(name, issues);
  return merged;
}
