// PgBouncer in transaction mode between the service and Postgres: hundreds of client connections
// share the few server connections Postgres is sized for.
import { Construct } from 'constructs';
import { k8s } from 'cdk8s-plus-27';
import type { Preset } from '../presets.js';
import { renderPgBouncerIni } from '../tuning/pgbouncer.js';
import { containerSecurity, DATABASE, int, k8sResources, labels, nameOf, podSecurity, PORTS, preferSpread, SECRETS, selectorLabels, tmpVolume } from './common.js';

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
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: int(0), maxSurge: int(1) } },
        template: {
          metadata: { labels: labels('pgbouncer') },
          spec: {
            securityContext: podSecurity(PGBOUNCER_UID),
            automountServiceAccountToken: false,
            affinity: preferSpread('pgbouncer'),
            // SIGTERM makes PgBouncer wait for clients to leave (safe shutdown) within this window.
            terminationGracePeriodSeconds: 30,
            containers: [{
              name: 'pgbouncer',
              image: preset.images.pgbouncer,
              command: ['pgbouncer', '/etc/pgbouncer/pgbouncer.ini'],
              ports: [{ name: 'pgbouncer', containerPort: PORTS.pgbouncer }],
              resources: k8sResources(preset.pgbouncer.resources),
              securityContext: containerSecurity,
              readinessProbe: { tcpSocket: { port: int(PORTS.pgbouncer) }, periodSeconds: 5, timeoutSeconds: 3 },
              livenessProbe: { tcpSocket: { port: int(PORTS.pgbouncer) }, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 6 },
              // Stop taking new connections, let Service endpoints update, then exit.
              lifecycle: { preStop: { exec: { command: ['sh', '-c', 'sleep 5'] } } },
              volumeMounts: [
                { name: 'config', mountPath: '/etc/pgbouncer/pgbouncer.ini', subPath: 'pgbouncer.ini', readOnly: true },
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
    new k8s.KubePodDisruptionBudget(this, 'pdb', {
      metadata: { name, labels: labels('pgbouncer') },
      spec: { maxUnavailable: int(1), selector: { matchLabels: selectorLabels('pgbouncer') } },
    });
  }
}
