// The whole topology for one preset: Redis with Sentinel, PgBouncer, Postgres (or an external
// one), web and worker with their autoscalers, the migration Job, the policies around them, and
// their monitoring (scrape targets, alerts, dashboard).
import { Chart, type ChartProps } from 'cdk8s';
import type { Construct } from 'constructs';
import { k8s } from 'cdk8s-plus-27';
import type { Preset } from '../presets.js';
import { MIGRATE_RESOURCES } from '../validate.js';
import { AppTierDeployment } from '../constructs/app-tier.js';
import { APP, configHash, DATABASE, labels, nameOf, PORTS, SECRETS } from '../constructs/common.js';
import { MigrationJob } from '../constructs/migration-job.js';
import { Monitoring } from '../constructs/monitoring.js';
import { NetworkPolicies } from '../constructs/network-policies.js';
import { PgBouncer } from '../constructs/pgbouncer.js';
import { Postgres } from '../constructs/postgres.js';
import { RedisSentinel } from '../constructs/redis-sentinel.js';
import { MAX_PREPARED_STATEMENTS } from '../tuning/pgbouncer.js';

export interface WaRouterChartProps extends ChartProps {
  readonly preset: Preset;
  /** @default 'wa-router' */
  readonly namespace?: string;
  /** The service image (see the Dockerfile). */
  readonly image: string;
  /** @default 'cluster.local' */
  readonly clusterDomain?: string;
  /** @default the cluster's default StorageClass */
  readonly storageClassName?: string;
  /** Every Deployment at its HPA ceiling (fit tests). @default false */
  readonly atPeak?: boolean;
  /** Namespace KEDA's operator runs in, when the preset enables KEDA. @default 'keda' */
  readonly kedaNamespace?: string;
}

/** BullMQ's list of waiting inbound jobs: `<QUEUE_PREFIX>:<queue>:wait`. */
const INBOUND_WAIT_LIST = 'wa:inbound:wait';

export class WaRouterChart extends Chart {
  constructor(scope: Construct, id: string, props: WaRouterChartProps) {
    const namespace = props.namespace ?? APP;
    super(scope, id, { ...props, namespace, labels: { 'app.kubernetes.io/part-of': APP } });
    const { preset } = props;

    new k8s.KubeNamespace(this, 'namespace', {
      metadata: {
        name: namespace,
        // Every pod here meets the `restricted` Pod Security Standard; the namespace enforces it.
        labels: { 'pod-security.kubernetes.io/enforce': 'restricted', 'pod-security.kubernetes.io/enforce-version': 'latest' },
      },
    });
    const serviceAccount = nameOf('app');
    new k8s.KubeServiceAccount(this, 'service-account', {
      metadata: { name: serviceAccount, labels: labels('app') },
      // The service never talks to the Kubernetes API.
      automountServiceAccountToken: false,
    });

    const redis = new RedisSentinel(this, 'redis', { preset, namespace, clusterDomain: props.clusterDomain, storageClassName: props.storageClassName });
    const inCluster = preset.postgres.mode === 'statefulset';
    const db = inCluster
      ? new Postgres(this, 'postgres', { preset, storageClassName: props.storageClassName })
      : undefined;
    const ext = preset.postgres.external;
    const pgbouncer = new PgBouncer(this, 'pgbouncer', {
      preset,
      dbHost: db ? db.host : (ext?.host ?? ''),
      dbPort: db ? db.port : ext?.port,
      database: ext?.database ?? DATABASE,
    });

    const configMap = nameOf('config');
    const appConfig = {
      NODE_ENV: 'production',
      PORT: String(PORTS.http),
      LOG_LEVEL: 'info',
      REDIS_SENTINELS: redis.sentinelAddresses.join(','),
      REDIS_MASTER_NAME: redis.masterName,
      // A replica (kept by Sentinel) holds every acked webhook before Meta gets its 200 ...
      ACK_DURABILITY: 'replicated',
      // ... while one is connected. With the only replica restarting, resyncing, or not yet back
      // after a failover, acks rest on the master's AOF alone (counted in
      // wa_router_ack_local_fallback_total) instead of every webhook answering 503.
      ACK_REPLICA_FALLBACK: 'local',
      QUEUE_PREFIX: 'wa',
      // The inbox pages and the token check planned once per connection: our PgBouncer tracks
      // named prepared statements (max_prepared_statements, tuning/pgbouncer.ts).
      DATABASE_PREPARED_STATEMENTS: String(MAX_PREPARED_STATEMENTS > 0),
      MEDIA_STORE: 's3',
      S3_BUCKET: preset.media.bucket,
      S3_REGION: preset.media.region,
      S3_FORCE_PATH_STYLE: String(preset.media.forcePathStyle),
      MEDIA_CONCURRENCY: String(preset.media.concurrency),
      MEDIA_CHANNEL_CONCURRENCY: String(preset.media.channelConcurrency),
      MEDIA_URL_TTL_SECONDS: String(preset.media.urlTtlSeconds),
      MEDIA_S3_REDIRECT: String(preset.media.s3Redirect),
      ...(preset.media.endpoint ? { S3_ENDPOINT: preset.media.endpoint } : {}),
      ...(preset.media.publicUrl ? { PUBLIC_URL: preset.media.publicUrl } : {}),
    };
    new k8s.KubeConfigMap(this, 'config', { metadata: { name: configMap, labels: labels('app') }, data: appConfig });
    const appConfigHash = configHash(appConfig);
    // Kubernetes expands $(VAR) from earlier entries: the URL is built from the database Secret.
    const dbEnv = (poolMax: number): k8s.EnvVar[] => [
      { name: 'REDIS_PASSWORD', valueFrom: { secretKeyRef: { name: SECRETS.redis, key: 'password' } } },
      { name: 'DB_USER', valueFrom: { secretKeyRef: { name: SECRETS.postgres, key: 'username' } } },
      { name: 'DB_PASSWORD', valueFrom: { secretKeyRef: { name: SECRETS.postgres, key: 'password' } } },
      { name: 'DATABASE_URL', value: `postgres://$(DB_USER):$(DB_PASSWORD)@${pgbouncer.host}:${pgbouncer.port}/${ext?.database ?? DATABASE}` },
      { name: 'DB_POOL_MAX', value: String(poolMax) },
      { name: 'S3_ACCESS_KEY_ID', valueFrom: { secretKeyRef: { name: SECRETS.media, key: 'accessKeyId', optional: true } } },
      { name: 'S3_SECRET_ACCESS_KEY', valueFrom: { secretKeyRef: { name: SECRETS.media, key: 'secretAccessKey', optional: true } } },
      { name: 'MEDIA_URL_SECRET', valueFrom: { secretKeyRef: { name: SECRETS.media, key: 'urlSecret', optional: true } } },
    ];

    const common = { preset, image: props.image, configMap, serviceAccount, atPeak: props.atPeak, configHash: appConfigHash, schemaCheck: { env: dbEnv(1), resources: MIGRATE_RESOURCES } };
    new AppTierDeployment(this, 'web', { ...common, role: 'web', env: dbEnv(preset.web.dbPoolMax) });
    new AppTierDeployment(this, 'worker', {
      ...common, role: 'worker',
      env: [...dbEnv(preset.worker.concurrency), { name: 'WORKER_CONCURRENCY', value: String(preset.worker.concurrency) }],
      keda: preset.worker.keda.enabled ? { redisSentinels: redis.sentinelAddresses, masterName: redis.masterName, listName: INBOUND_WAIT_LIST } : undefined,
    });
    new MigrationJob(this, 'migrate', { image: props.image, configMap, serviceAccount, env: dbEnv(1), resources: MIGRATE_RESOURCES, configHash: appConfigHash });
    new Monitoring(this, 'monitoring', { preset, namespace });
    new NetworkPolicies(this, 'network', {
      postgresInCluster: inCluster,
      postgresReplica: inCluster && preset.postgres.streamingReplica,
      kedaNamespace: preset.worker.keda.enabled ? (props.kedaNamespace ?? 'keda') : undefined,
    });
  }
}
