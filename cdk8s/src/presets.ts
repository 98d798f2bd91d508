// Sizing presets: every number the topology needs, in one typed object per size, checked by
// validate.ts before anything is synthesized. The numbers come from the sizing documents the
// project started from; where we differ, the preset's doc comment says so and why.
import versions from '../../versions.json' with { type: 'json' };

/** CPU as a Kubernetes quantity (`"500m"`, `"2"`), memory as one (`"512Mi"`, `"3Gi"`). */
export interface ResourceAmounts {
  readonly cpu: string;
  readonly memory: string;
}

export interface Resources {
  readonly requests: ResourceAmounts;
  readonly limits: ResourceAmounts;
}

/** The machines a preset is sized for. The scheduler-facing figure is `allocatable`. */
export interface NodePool {
  readonly nodes: number;
  /** Cores per node as sold. */
  readonly cpuCores: number;
  /** Memory per node as sold, GiB. */
  readonly memoryGiB: number;
  /** What is left for our pods per node after the OS and kubelet reservations. */
  readonly allocatable: { readonly cpuCores: number; readonly memoryGiB: number };
  /**
   * What the cluster's own DaemonSets (kube-proxy, the CNI agent, log and metrics agents)
   * request on every node, out of `allocatable`.
   */
  readonly daemonSets: ResourceAmounts;
}

export interface AppTier {
  readonly replicas: number;
  /** HPA ceiling. The node-pool check sizes the pool for every tier at its ceiling. */
  readonly maxReplicas: number;
  /** HPA target, percent of the CPU request. */
  readonly targetCpuUtilization: number;
  /** Postgres connections each pod opens at most (`DB_POOL_MAX`). */
  readonly dbPoolMax: number;
  readonly resources: Resources;
}

export interface WorkerTier extends Omit<AppTier, 'dbPoolMax'> {
  /**
   * BullMQ jobs in flight per pod (`WORKER_CONCURRENCY`). Each can hold a Postgres connection,
   * so it is also the pod's `DB_POOL_MAX`.
   */
  readonly concurrency: number;
  /** Optional KEDA ScaledObject on queue depth, beside (not instead of) the CPU HPA's bounds. */
  readonly keda: {
    readonly enabled: boolean;
    /** Waiting jobs per worker pod before KEDA adds one. */
    readonly queueDepthPerReplica: number;
  };
}

export interface RedisTier {
  /** Replicas besides the master (Sentinel can promote one). */
  readonly replicas: number;
  /** `maxmemory` in redis.conf units (`"4gb"` = 4 GiB). */
  readonly maxmemory: string;
  /** Volume for AOF + RDB per Redis pod. */
  readonly storage: string;
  readonly ioThreads: number;
  /** `client-output-buffer-limit` per class: hard, soft, soft seconds. */
  readonly outputBuffers: {
    readonly replica: string;
    readonly pubsub: string;
  };
  /** Replication backlog: a replica that reconnects within it resyncs partially, not fully. */
  readonly replBacklogSize: string;
  readonly resources: Resources;
  readonly sentinel: {
    readonly replicas: number;
    readonly quorum: number;
    readonly downAfterMs: number;
    readonly failoverTimeoutMs: number;
    readonly resources: Resources;
  };
}

export interface PgBouncerTier {
  readonly replicas: number;
  readonly poolMode: 'transaction' | 'session';
  readonly maxClientConn: number;
  readonly defaultPoolSize: number;
  readonly reservePoolSize: number;
  /** Per PgBouncer pod: the server connections it may open to Postgres. */
  readonly maxDbConnections: number;
  readonly serverIdleTimeout: number;
  readonly resources: Resources;
}

/** postgresql.conf values the preset pins; everything else is derived from the resources. */
export type PostgresSettings = Readonly<Record<string, string | number>>;

export interface PostgresTier {
  /** `statefulset`: we run it. `external`: the user's database; nothing is synthesized for it. */
  readonly mode: 'statefulset' | 'external';
  readonly external?: { readonly host: string; readonly port: number; readonly database: string };
  readonly storage: string;
  /** A hot standby fed by streaming replication. */
  readonly streamingReplica: boolean;
  readonly maxConnections: number;
  /** `superuser_reserved_connections` plus room for replication and maintenance sessions. */
  readonly reservedConnections: number;
  readonly settings: PostgresSettings;
  readonly resources: Resources;
}

export interface Images {
  readonly postgres: string;
  readonly redis: string;
  readonly pgbouncer: string;
}

/** Thresholds of the alerts (see the README's monitoring section) and what to synthesize for them. */
export interface MonitoringSettings {
  /**
   * Synthesize ServiceMonitors and the PrometheusRule. Set false on clusters without the
   * Prometheus Operator's CRDs; the dashboard ConfigMap is synthesized either way.
   */
  readonly prometheusOperator: boolean;
  /** The oldest inbound job may wait this long before WaRouterInboundBacklogOld fires. */
  readonly inboundBacklogSeconds: number;
  /** Minutes without an applied chunk before an unfinished history sync counts as stalled. */
  readonly historyStallMinutes: number;
  /** The oldest undelivered event of an area may wait this long before WaRouterAreaBacklog fires. */
  readonly areaBacklogSeconds: number;
  /**
   * Labels added to the ServiceMonitors and the PrometheusRule, for a Prometheus whose selectors
   * ask for them (kube-prometheus-stack selects `release: <its release name>` by default).
   */
  readonly extraLabels: Readonly<Record<string, string>>;
}

/**
 * Inbound media go to an S3-compatible bucket the operator provides (we deploy no object store);
 * its keys come from the `wa-router-media` Secret (`accessKeyId`, `secretAccessKey`), optional
 * where the pods get credentials another way (an instance role, web identity).
 */
export interface MediaSettings {
  readonly bucket: string;
  readonly region: string;
  /** An S3-compatible endpoint (MinIO, R2, ...); unset is AWS S3 of `region`. */
  readonly endpoint?: string;
  readonly forcePathStyle: boolean;
  /** Downloads in flight per worker pod. */
  readonly concurrency: number;
  /** History downloads of one channel at once per worker pod, so one number's backlog leaves slots to the others. */
  readonly channelConcurrency: number;
  /**
   * This service's public origin (`https://inbox.example.com`): `media.url` links in messages and
   * in events forwarded to areas are absolute with it, so an area's CRM can fetch them. Unset,
   * they are paths. Their signing key is `urlSecret` of the `wa-router-media` Secret (optional;
   * else derived from API_TOKEN, and links die with a token rotation).
   */
  readonly publicUrl?: string;
  /** Lifetime of `media.url` links and of the presigned URLs GET /v1/media redirects to. */
  readonly urlTtlSeconds: number;
  /** GET /v1/media redirects to a presigned bucket URL (the bucket must be reachable by the clients) instead of streaming through the web pods. */
  readonly s3Redirect: boolean;
}

export interface Preset {
  readonly name: string;
  /** Who it is for, in one line (the README's table). */
  readonly purpose: string;
  /** What it is sized to take, for the README and for humans choosing. */
  readonly targets: {
    readonly webhooksPerSecond: number;
    readonly historySync: string;
    /** Webhook answer time at the 99th percentile the preset is sized for; the latency alert's threshold. */
    readonly webhookP99Ms: number;
  };
  readonly nodePool: NodePool;
  readonly web: AppTier;
  readonly worker: WorkerTier;
  readonly redis: RedisTier;
  readonly pgbouncer: PgBouncerTier;
  readonly postgres: PostgresTier;
  readonly images: Images;
  readonly monitoring: MonitoringSettings;
  readonly media: MediaSettings;
}

// The versions the local stack and the tests run too (versions.json, scripts/stack/servers.ts).
const images = {
  postgres: versions.postgres.image,
  redis: versions.redis.image,
  pgbouncer: versions.pgbouncer.image,
} as const satisfies Images;

// Alert thresholds every preset shares: what an inbox's users notice, not what the hardware allows.
const monitoring = {
  prometheusOperator: true,
  inboundBacklogSeconds: 60,
  historyStallMinutes: 30,
  areaBacklogSeconds: 300,
  extraLabels: {},
} as const satisfies MonitoringSettings;
// Each download holds at most two 5 MiB parts in memory, so 8 per pod stay within ~80 MiB.
// Half the slots at most for one number's history backlog; links live an hour.
const media = { bucket: 'wa-router-media', region: 'us-east-1', forcePathStyle: false, concurrency: 8, channelConcurrency: 4, urlTtlSeconds: 3_600, s3Redirect: true } as const satisfies MediaSettings;
// kube-proxy (100m) plus a CNI agent and a node exporter at their usual requests; set yours.
const daemonSets = { cpu: '200m', memory: '256Mi' } as const satisfies ResourceAmounts;

const sentinel = {
  replicas: 3,
  quorum: 2,
  // Long enough to ride out a GC pause or a slow AOF rewrite, short enough that the webhook
  // answers 503 (Meta retries) for seconds, not minutes.
  downAfterMs: 5_000,
  failoverTimeoutMs: 60_000,
  resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '200m', memory: '128Mi' } },
} as const;

/**
 * `minimal`: 100-150 users on one 4-core/8 GB node.
 *
 * Documents: web 1 × 1.5 CPU/1.5 GiB; worker concurrency 15, 2 CPU/2 GiB; Redis maxmemory
 * 1 GB, 1 CPU/1.5 GiB. They leave Postgres and PgBouncer to the host; we size them here.
 *
 * Deviations: Redis runs `noeviction` (the documents' `allkeys-lru` would evict queued jobs),
 * with a replica and 3 Sentinels, and PgBouncer sits in front of Postgres, as in every preset:
 * a pod restart must not lose acked webhooks, and connection counts must be bounded.
 * Day 2: Redis gets 1.75 GiB (maxmemory + the replica's output buffer + 50% for the fork of an
 * AOF rewrite), and web requests 384 MiB so its rollout surge pod fits beside the DaemonSets.
 */
export const minimal = {
  name: 'minimal',
  purpose: 'A small support team (100-150 users) on one 4-core/8 GB node',
  targets: { webhooksPerSecond: 500, historySync: '10,000 messages', webhookP99Ms: 250 },
  nodePool: { nodes: 1, cpuCores: 4, memoryGiB: 8, allocatable: { cpuCores: 3.8, memoryGiB: 7 }, daemonSets },
  web: {
    replicas: 1,
    maxReplicas: 2,
    targetCpuUtilization: 70,
    dbPoolMax: 10,
    resources: { requests: { cpu: '250m', memory: '384Mi' }, limits: { cpu: '1500m', memory: '1536Mi' } },
  },
  worker: {
    replicas: 1,
    maxReplicas: 2,
    targetCpuUtilization: 70,
    concurrency: 15,
    keda: { enabled: false, queueDepthPerReplica: 1_000 },
    resources: { requests: { cpu: '500m', memory: '1Gi' }, limits: { cpu: '2', memory: '2Gi' } },
  },
  redis: {
    replicas: 1,
    maxmemory: '1gb',
    storage: '5Gi',
    ioThreads: 1,
    outputBuffers: { replica: '256mb 64mb 60', pubsub: '32mb 8mb 60' },
    replBacklogSize: '64mb',
    resources: { requests: { cpu: '250m', memory: '1Gi' }, limits: { cpu: '1', memory: '1792Mi' } },
    sentinel,
  },
  pgbouncer: {
    replicas: 1,
    poolMode: 'transaction',
    maxClientConn: 200,
    defaultPoolSize: 20,
    reservePoolSize: 5,
    maxDbConnections: 40,
    serverIdleTimeout: 600,
    resources: { requests: { cpu: '100m', memory: '64Mi' }, limits: { cpu: '500m', memory: '128Mi' } },
  },
  postgres: {
    mode: 'statefulset',
    storage: '20Gi',
    streamingReplica: false,
    maxConnections: 100,
    reservedConnections: 10,
    settings: {},
    resources: { requests: { cpu: '500m', memory: '1Gi' }, limits: { cpu: '1', memory: '2Gi' } },
  },
  images,
  monitoring,
  media,
} as const satisfies Preset;

/**
 * `standard`: a busy inbox on one 8-core/16 GB node.
 *
 * Documents: web 1 × 2 CPU/2 GiB (requests 1/1 GiB); worker 1 × 3 CPU/3 GiB (requests 1.5/2 GiB),
 * concurrency 25; Redis maxmemory 2 GB, 2 CPU/2.5 GiB (requests 0.5/1 GiB); Postgres 2 CPU/3 GiB
 * (requests 1/2 GiB) with max_connections 200 and the settings pinned below.
 *
 * Deviations: `noeviction`, a Redis replica with 3 Sentinels, and PgBouncer (its pool is ours:
 * 30 + 10 reserve per pod, 2 pods so a restart never cuts every connection). Day 2: web requests
 * 0.5 core, not 1, so a rollout at the HPA ceilings (one surge web pod) fits the 7.5 cores
 * beside the DaemonSets; ingest is one Redis round trip per tick, and the HPA scales at 70% of
 * the request, so web scales out sooner rather than running short. Redis gets 3.5 GiB
 * (2 GB + the 512 MB replica buffer + 1 GB fork headroom): at 2.5 GiB a rewrite under writes
 * was OOM-killed before `noeviction` could answer.
 */
export const standard = {
  name: 'standard',
  purpose: 'A busy support inbox (several numbers, tens of agents) on one 8-core/16 GB node',
  targets: { webhooksPerSecond: 2_000, historySync: '50,000 messages', webhookP99Ms: 100 },
  nodePool: { nodes: 1, cpuCores: 8, memoryGiB: 16, allocatable: { cpuCores: 7.5, memoryGiB: 14.5 }, daemonSets },
  web: {
    replicas: 1,
    maxReplicas: 2,
    targetCpuUtilization: 70,
    dbPoolMax: 10,
    resources: { requests: { cpu: '500m', memory: '1Gi' }, limits: { cpu: '2', memory: '2Gi' } },
  },
  worker: {
    replicas: 1,
    maxReplicas: 2,
    targetCpuUtilization: 70,
    concurrency: 25,
    keda: { enabled: false, queueDepthPerReplica: 2_000 },
    resources: { requests: { cpu: '1500m', memory: '2Gi' }, limits: { cpu: '3', memory: '3Gi' } },
  },
  redis: {
    replicas: 1,
    maxmemory: '2gb',
    storage: '10Gi',
    ioThreads: 2,
    outputBuffers: { replica: '512mb 128mb 60', pubsub: '64mb 16mb 60' },
    replBacklogSize: '128mb',
    resources: { requests: { cpu: '500m', memory: '1Gi' }, limits: { cpu: '2', memory: '3584Mi' } },
    sentinel,
  },
  pgbouncer: {
    replicas: 2,
    poolMode: 'transaction',
    maxClientConn: 300,
    defaultPoolSize: 30,
    reservePoolSize: 10,
    maxDbConnections: 60,
    serverIdleTimeout: 600,
    resources: { requests: { cpu: '100m', memory: '64Mi' }, limits: { cpu: '500m', memory: '256Mi' } },
  },
  postgres: {
    mode: 'statefulset',
    storage: '50Gi',
    streamingReplica: false,
    maxConnections: 200,
    reservedConnections: 10,
    settings: {
      shared_buffers: '512MB',
      effective_cache_size: '2GB',
      maintenance_work_mem: '128MB',
      work_mem: '8MB',
      wal_buffers: '16MB',
      min_wal_size: '1GB',
      max_wal_size: '4GB',
      checkpoint_completion_target: 0.9,
      random_page_cost: 1.1,
      effective_io_concurrency: 200,
    },
    resources: { requests: { cpu: '1', memory: '2Gi' }, limits: { cpu: '2', memory: '3Gi' } },
  },
  images,
  monitoring,
  media,
} as const satisfies Preset;

/**
 * `premium`: 50,000-message coexistence syncs on one 24-core/32 GB node (22 cores and
 * 29.5 GB allotted to the stack).
 *
 * Documents: web 2 × 3 CPU/3 GiB (requests 1.5/2 GiB); worker 2 × 4 CPU/5 GiB (requests 2/3 GiB),
 * concurrency 40; PgBouncer 1 CPU/512 MiB, transaction mode, max_client_conn 500,
 * default_pool_size 50, reserve_pool_size 25, max_db_connections 100, server_idle_timeout 600;
 * Postgres 4 CPU/8 GiB (requests 2/4 GiB) with the settings pinned below; Redis maxmemory 4 GB,
 * 3 CPU/5 GiB (requests 1.5/3 GiB), io-threads 4, slowlog, output buffer limits for replicas
 * and pub/sub. Their limits add up to exactly the 22 cores/29.5 GB allotted.
 *
 * Deviations: `noeviction`; a Redis replica and 3 Sentinels (their requests, not their limits,
 * must fit: limits may overcommit, requests may not); 2 PgBouncer pods so a restart never cuts
 * every connection, hence max_connections 250 to hold both pods' max_db_connections.
 * The HPA ceilings (web 4, worker 3) are the most that still fits the allotment by requests.
 * Day 2: web requests 1.5 GiB, not 2, so the rollout surge pod fits the 29.5 GB beside the
 * DaemonSets; Redis gets 7 GiB (4 GB + the 1 GB replica buffer + 2 GB fork headroom), not 5.
 */
export const premium = {
  name: 'premium',
  purpose: '50,000-message history syncs and 10+ inboxes on one 24-core/32 GB node',
  targets: { webhooksPerSecond: 10_000, historySync: '50,000 messages, several channels at once', webhookP99Ms: 50 },
  nodePool: { nodes: 1, cpuCores: 24, memoryGiB: 32, allocatable: { cpuCores: 22, memoryGiB: 29.5 }, daemonSets },
  web: {
    replicas: 2,
    maxReplicas: 4,
    targetCpuUtilization: 70,
    dbPoolMax: 20,
    resources: { requests: { cpu: '1500m', memory: '1536Mi' }, limits: { cpu: '3', memory: '3Gi' } },
  },
  worker: {
    replicas: 2,
    maxReplicas: 3,
    targetCpuUtilization: 70,
    concurrency: 40,
    keda: { enabled: false, queueDepthPerReplica: 5_000 },
    resources: { requests: { cpu: '2', memory: '3Gi' }, limits: { cpu: '4', memory: '5Gi' } },
  },
  redis: {
    replicas: 1,
    maxmemory: '4gb',
    storage: '20Gi',
    ioThreads: 4,
    outputBuffers: { replica: '1gb 256mb 60', pubsub: '128mb 32mb 60' },
    replBacklogSize: '256mb',
    resources: { requests: { cpu: '1500m', memory: '3Gi' }, limits: { cpu: '3', memory: '7Gi' } },
    sentinel,
  },
  pgbouncer: {
    replicas: 2,
    poolMode: 'transaction',
    maxClientConn: 500,
    defaultPoolSize: 50,
    reservePoolSize: 25,
    maxDbConnections: 100,
    serverIdleTimeout: 600,
    resources: { requests: { cpu: '250m', memory: '128Mi' }, limits: { cpu: '1', memory: '512Mi' } },
  },
  postgres: {
    mode: 'statefulset',
    storage: '200Gi',
    streamingReplica: false,
    maxConnections: 250,
    reservedConnections: 10,
    settings: {
      shared_buffers: '2GB',
      effective_cache_size: '6GB',
      maintenance_work_mem: '512MB',
      work_mem: '16MB',
      wal_buffers: '32MB',
      min_wal_size: '2GB',
      max_wal_size: '8GB',
      wal_compression: 'on',
      checkpoint_timeout: '15min',
      checkpoint_completion_target: 0.9,
      random_page_cost: 1.1,
      effective_io_concurrency: 200,
      autovacuum_max_workers: 4,
      autovacuum_naptime: '10s',
      autovacuum_vacuum_scale_factor: 0.05,
      autovacuum_analyze_scale_factor: 0.05,
      max_worker_processes: 8,
      max_parallel_workers: 8,
      max_parallel_workers_per_gather: 4,
      wal_level: 'replica',
      log_min_duration_statement: '1s',
    },
    resources: { requests: { cpu: '2', memory: '4Gi' }, limits: { cpu: '4', memory: '8Gi' } },
  },
  images,
  monitoring,
  media,
} as const satisfies Preset;

export const presets = { minimal, standard, premium } as const;
export type PresetName = keyof typeof presets;
export const PRESET_NAMES = Object.keys(presets) as PresetName[];

export function isPresetName(name: string): name is PresetName {
  return Object.hasOwn(presets, name);
}
