// Postgres as a StatefulSet with the preset's tuned postgresql.conf, a volume per pod, and an
// optional hot standby fed by streaming replication. `external` mode synthesizes none of it.
import { Construct } from 'constructs';
import { k8s } from 'cdk8s-plus-27';
import type { Preset } from '../presets.js';
import { memoryBytes, MiB } from '../quantity.js';
import { renderPostgresConf } from '../tuning/postgres.js';
import {
  CONFIG_HASH_ANNOTATION, configHash, containerSecurity, DATABASE, disruptionBudget, int, k8sResources, labels, nameOf, podSecurity, PORTS, preferSpread, SECRETS, selectorLabels, tmpVolume,
} from './common.js';

export interface PostgresProps {
  readonly preset: Preset;
  /** Secret with `username` and `password`. @default 'wa-router-postgres' */
  readonly credentialsSecret?: string;
  /** @default the cluster's default StorageClass */
  readonly storageClassName?: string;
}

/** The postgres image's `postgres` user (Debian). */
const POSTGRES_UID = 999;

const HBA = `# pg_hba.conf written by wa-router's toolkit: passwords (SCRAM) for every network client
local all all trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
host all all 0.0.0.0/0 scram-sha-256
host all all ::/0 scram-sha-256
host replication all 0.0.0.0/0 scram-sha-256
host replication all ::/0 scram-sha-256
`;

// A standby clones the primary once (pg_basebackup -R writes standby.signal and the connection),
// then runs as a hot standby; its volume keeps it a standby across restarts.
const START_REPLICA = `#!/bin/sh
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  export PGPASSWORD="$POSTGRES_PASSWORD"
  i=0
  until pg_isready -h "$PRIMARY_HOST" -p ${PORTS.postgres} -q; do
    i=$((i + 1)); [ "$i" -lt 300 ] || { echo "primary $PRIMARY_HOST not ready" >&2; exit 1; }
    sleep 2
  done
  pg_basebackup -h "$PRIMARY_HOST" -p ${PORTS.postgres} -U "$POSTGRES_USER" -D "$PGDATA" -R -X stream --checkpoint=fast
  chmod 700 "$PGDATA"
fi
exec postgres -c config_file=/etc/postgresql/postgresql.conf -c hba_file=/etc/postgresql/pg_hba.conf
`;

export class Postgres extends Construct {
  /** The primary's Service. */
  readonly host = nameOf('postgres');
  readonly port = PORTS.postgres;

  constructor(scope: Construct, id: string, props: PostgresProps) {
    super(scope, id);
    const { preset } = props;
    const pg = preset.postgres;
    const name = nameOf('postgres');
    const secret = props.credentialsSecret ?? SECRETS.postgres;
    const config = {
      'postgresql.conf': renderPostgresConf(preset, { port: PORTS.postgres, listenAddresses: '*' }),
      'pg_hba.conf': HBA,
      'start-replica.sh': START_REPLICA,
    };
    new k8s.KubeConfigMap(this, 'config', { metadata: { name, labels: labels('postgres') }, data: config });
    // Several settings (shared_buffers, max_connections) take effect only at a restart: a change rolls the pod.

    // Parallel queries and hash joins use dynamic shared memory in /dev/shm; a container's default is 64 MB.
    const shm = `${Math.max(64, Math.floor(memoryBytes(pg.resources.limits.memory) / 4 / MiB))}Mi`;
    const env: k8s.EnvVar[] = [
      { name: 'POSTGRES_USER', valueFrom: { secretKeyRef: { name: secret, key: 'username' } } },
      { name: 'POSTGRES_PASSWORD', valueFrom: { secretKeyRef: { name: secret, key: 'password' } } },
      { name: 'POSTGRES_DB', value: DATABASE },
      // A subdirectory: a fresh volume's lost+found would make initdb refuse the mount point.
      { name: 'PGDATA', value: '/var/lib/postgresql/data/pgdata' },
    ];
    const isReady = { exec: { command: ['sh', '-c', `pg_isready -h 127.0.0.1 -p ${PORTS.postgres} -U "$POSTGRES_USER" -d ${DATABASE} -q`] } };
    const statefulSet = (component: string, command: string[] | undefined, args: string[] | undefined, extraEnv: k8s.EnvVar[]) =>
      new k8s.KubeStatefulSet(this, component, {
        metadata: { name: nameOf(component), labels: labels(component) },
        spec: {
          serviceName: `${nameOf(component)}-headless`,
          replicas: 1,
          selector: { matchLabels: selectorLabels(component) },
          template: {
            metadata: { labels: labels(component), annotations: { [CONFIG_HASH_ANNOTATION]: configHash(config) } },
            spec: {
              securityContext: podSecurity(POSTGRES_UID),
              automountServiceAccountToken: false,
              affinity: preferSpread('postgres'),
              // A clean shutdown (fast mode, then a checkpoint) avoids crash recovery at the next start.
              terminationGracePeriodSeconds: 120,
              containers: [{
                name: 'postgres',
                image: preset.images.postgres,
                command,
                args,
                env: [...env, ...extraEnv],
                ports: [{ name: 'postgres', containerPort: PORTS.postgres }],
                resources: k8sResources(pg.resources),
                securityContext: containerSecurity,
                startupProbe: { ...isReady, periodSeconds: 5, failureThreshold: 120, timeoutSeconds: 5 },
                readinessProbe: { ...isReady, periodSeconds: 5, timeoutSeconds: 5 },
                livenessProbe: { ...isReady, periodSeconds: 15, timeoutSeconds: 10, failureThreshold: 6 },
                volumeMounts: [
                  { name: 'data', mountPath: '/var/lib/postgresql/data' },
                  { name: 'config', mountPath: '/etc/postgresql', readOnly: true },
                  { name: 'run', mountPath: '/var/run/postgresql' },
                  { name: 'tmp', mountPath: '/tmp' },
                  { name: 'shm', mountPath: '/dev/shm' },
                ],
              }],
              volumes: [
                { name: 'config', configMap: { name, defaultMode: 0o555 } },
                tmpVolume('run', '16Mi'),
                tmpVolume('tmp', '1Gi'),
                { name: 'shm', emptyDir: { medium: 'Memory', sizeLimit: k8s.Quantity.fromString(shm) } },
              ],
            },
          },
          volumeClaimTemplates: [{
            metadata: { name: 'data', labels: labels(component) },
            spec: {
              accessModes: ['ReadWriteOnce'],
              storageClassName: props.storageClassName,
              resources: { requests: { storage: k8s.Quantity.fromString(pg.storage) } },
            },
          }],
          persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Retain', whenScaled: 'Retain' },
        },
      });

    statefulSet('postgres', undefined, ['-c', 'config_file=/etc/postgresql/postgresql.conf', '-c', 'hba_file=/etc/postgresql/pg_hba.conf'], []);
    this.service('postgres');
    if (pg.streamingReplica) {
      statefulSet('postgres-replica', ['sh', '/etc/postgresql/start-replica.sh'], undefined, [{ name: 'PRIMARY_HOST', value: name }]);
      this.service('postgres-replica');
    }
    disruptionBudget(this, 'pdb', preset, 'postgres', { maxUnavailable: int(1) });
  }

  private service(component: string): void {
    const name = nameOf(component);
    for (const headless of [false, true]) {
      new k8s.KubeService(this, `${component}${headless ? '-headless' : '-service'}`, {
        metadata: { name: headless ? `${name}-headless` : name, labels: labels(component) },
        spec: {
          clusterIp: headless ? 'None' : undefined,
          selector: selectorLabels(component),
          ports: [{ name: 'postgres', port: PORTS.postgres, targetPort: int(PORTS.postgres) }],
        },
      });
    }
  }
}
