// PgBouncer in transaction mode between the service and Postgres: hundreds of client connections
// share the few server connections Postgres is sized for.
import { Construct } from 'constructs';
import { k8s } from 'cdk8s-plus-27';
import type { Preset } from '../presets.js';
import { renderPgBouncerIni, STATEMENT_TIMEOUT_MS } from '../tuning/pgbouncer.js';
import { ROLLOUT } from '../rollout.js';
import {
  CONFIG_HASH_ANNOTATION, configHash, containerSecurity, DATABASE, disruptionBudget, int, k8sResources, labels, nameOf, podSecurity, PORTS, preferSpread, SECRETS, selectorLabels, tmpVolume,
} from './common.js';

export interface PgBouncerProps {
  readonly preset: Preset;
  /** Postgres host and port PgBouncer connects to. */
  readonly dbHost: string;
  /** @default 5432 */
  readonly dbPort?: number;
  /** Database name. @default 'wa_router' */
  readonly database?: string;
  /** Secret with `userlist.txt`. @default 'wa-router-pgbouncer' */
  readonly userlistSecret?: string;
}

/** The pgbouncer image's `postgres` user (Alpine). */
const PGBOUNCER_UID = 70;

/** Seconds the pod keeps serving after it is marked for termination, so endpoints drop it first. */
const PRE_STOP_SECONDS = 5;

/**
 * Since 1.23 PgBouncer's SIGTERM waits for every client to disconnect, which pooled clients never
 * do: the kubelet's SIGKILL would cut transactions in flight. SIGINT is SHUTDOWN WAIT_FOR_SERVERS:
 * no new queries, in-flight transactions finish (statement_timeout bounds them), then exit. The
 * hook waits for that exit, so the kubelet's SIGTERM comes too late to change the mode.
 */
const PRE_STOP = `sleep ${PRE_STOP_SECONDS}; kill -INT 1; while kill -0 1 2>/dev/null; do sleep 1; done`;

export class PgBouncer extends Construct {
  /** The Service clients connect to. */
  readonly host = nameOf('pgbouncer');
  readonly port = PORTS.pgbouncer;

  constructor(scope: Construct, id: string, props: PgBouncerProps) {
    super(scope, id);
    const { preset } = props;
    const name = nameOf('pgbouncer');
    const ini = renderPgBouncerIni(preset, {
      listenAddr: '0.0.0.0',
      listenPort: PORTS.pgbouncer,
      dbHost: props.dbHost,
      dbPort: props.dbPort ?? PORTS.postgres,
      dbName: props.database ?? DATABASE,
      authFile: '/etc/pgbouncer/auth/userlist.txt',
      unixSocketDir: '',
    });
    new k8s.KubeConfigMap(this, 'config', { metadata: { name, labels: labels('pgbouncer') }, data: { 'pgbouncer.ini': ini } });

    new k8s.KubeDeployment(this, 'deployment', {
      metadata: { name, labels: labels('pgbouncer') },
      spec: {
        replicas: preset.pgbouncer.replicas,
        selector: { matchLabels: selectorLabels('pgbouncer') },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: int(ROLLOUT.pgbouncer.maxUnavailable), maxSurge: int(ROLLOUT.pgbouncer.maxSurge) } },
        template: {
          metadata: { labels: labels('pgbouncer'), annotations: { [CONFIG_HASH_ANNOTATION]: configHash(ini) } },
          spec: {
            securityContext: podSecurity(PGBOUNCER_UID),
            automountServiceAccountToken: false,
            affinity: preferSpread('pgbouncer'),
            // The pre-stop pause, then the longest transaction statement_timeout lets run, then margin.
            terminationGracePeriodSeconds: PRE_STOP_SECONDS + STATEMENT_TIMEOUT_MS / 1000 + 10,
            containers: [{
              name: 'pgbouncer',
              image: preset.images.pgbouncer,
              command: ['pgbouncer', '/etc/pgbouncer/config/pgbouncer.ini'],
              ports: [{ name: 'pgbouncer', containerPort: PORTS.pgbouncer }],
              resources: k8sResources(preset.pgbouncer.resources),
              securityContext: containerSecurity,
              readinessProbe: { tcpSocket: { port: int(PORTS.pgbouncer) }, periodSeconds: 5, timeoutSeconds: 3 },
              livenessProbe: { tcpSocket: { port: int(PORTS.pgbouncer) }, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 6 },
              lifecycle: { preStop: { exec: { command: ['sh', '-c', PRE_STOP] } } },
              // The whole directory, not a subPath: a subPath mount never sees a ConfigMap update.
              volumeMounts: [
                { name: 'config', mountPath: '/etc/pgbouncer/config', readOnly: true },
                { name: 'auth', mountPath: '/etc/pgbouncer/auth', readOnly: true },
                { name: 'tmp', mountPath: '/tmp' },
              ],
            }],
            volumes: [
              { name: 'config', configMap: { name } },
              { name: 'auth', secret: { secretName: props.userlistSecret ?? SECRETS.pgbouncer, defaultMode: 0o440 } },
              tmpVolume(),
            ],
          },
        },
      },
    });
    new k8s.KubeService(this, 'service', {
      metadata: { name, labels: labels('pgbouncer') },
      spec: { selector: selectorLabels('pgbouncer'), ports: [{ name: 'pgbouncer', port: PORTS.pgbouncer, targetPort: int(PORTS.pgbouncer) }] },
    });
    disruptionBudget(this, 'pdb', preset, 'pgbouncer', { maxUnavailable: int(1) });
  }
}
