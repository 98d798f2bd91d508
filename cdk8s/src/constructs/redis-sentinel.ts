// Redis for BullMQ: a master/replica StatefulSet with AOF + RDB on persistent volumes, watched by
// Sentinels that promote a replica when the master dies. Identities are pod DNS names, so a pod
// that comes back with a new IP is still the instance the others know.
import { Construct } from 'constructs';
import { k8s } from 'cdk8s-plus-27';
import type { Preset } from '../presets.js';
import { renderRedisConf } from '../tuning/redis.js';
import { renderSentinelConf } from '../tuning/sentinel.js';
import {
  CONFIG_HASH_ANNOTATION, configHash, containerSecurity, disruptionBudget, int, k8sResources, labels, nameOf, podSecurity, PORTS, preferSpread, REDIS_MASTER_NAME, SECRETS,
  selectorLabels, tmpVolume,
} from './common.js';

export interface RedisSentinelProps {
  readonly preset: Preset;
  readonly namespace: string;
  /** @default 'cluster.local' */
  readonly clusterDomain?: string;
  /** Secret holding `password`. @default 'wa-router-redis' */
  readonly passwordSecret?: string;
  /** @default the cluster's default StorageClass */
  readonly storageClassName?: string;
}

/** The redis image's `redis` user. */
const REDIS_UID = 999;

// Runs as the container's command: the config is copied somewhere writable, the password added
// from the Secret, and the role decided by asking the Sentinels who the master is now (after a
// failover the old master must come back as a replica, not as a second master). Written with cat,
// not cp: cp keeps the ConfigMap file's read-only mode (0555), so the appends below failed with
// "Permission denied" and, after a restart, so did cp itself.
const START_REDIS = `#!/bin/sh
set -eu
conf=/run/redis/redis.conf
cat /config/redis.conf > "$conf"
self="$POD_NAME.$HEADLESS"
{
  echo "requirepass $REDIS_PASSWORD"
  echo "masterauth $REDIS_PASSWORD"
  echo "replica-announce-ip $self"
} >> "$conf"
master=""
for s in $SENTINELS; do
  reply=$(timeout 3 redis-cli --raw -h "\${s%:*}" -p "\${s##*:}" sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null || true)
  host=$(echo "$reply" | sed -n 1p)
  if [ -n "$host" ]; then master="$host"; break; fi
done
if [ -z "$master" ]; then
  # No Sentinel knows a master yet: a fresh install, where pod 0 starts as the master.
  master="$FIRST_POD.$HEADLESS"
fi
if [ "$master" != "$self" ]; then
  echo "replicaof $master ${PORTS.redis}" >> "$conf"
fi
exec redis-server "$conf"
`;

const START_SENTINEL = `#!/bin/sh
set -eu
conf=/run/sentinel/sentinel.conf
master=""
for s in $SENTINELS; do
  case "$s" in "$POD_NAME."*) continue ;; esac
  reply=$(timeout 3 redis-cli --raw -h "\${s%:*}" -p "\${s##*:}" sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null || true)
  host=$(echo "$reply" | sed -n 1p)
  if [ -n "$host" ]; then master="$host"; break; fi
done
[ -n "$master" ] || master="$FIRST_REDIS"
# Sentinel refuses a master hostname it cannot resolve; the headless Service publishes pods
# before they are ready, so this waits seconds at most.
i=0
until getent hosts "$master" >/dev/null 2>&1; do
  i=$((i + 1)); [ "$i" -lt 120 ] || { echo "cannot resolve $master" >&2; exit 1; }
  sleep 1
done
sed "s/__MASTER_HOST__/$master/" /config/sentinel.conf > "$conf"
{
  echo "sentinel auth-pass $MASTER_NAME $REDIS_PASSWORD"
  echo "sentinel announce-ip $POD_NAME.$HEADLESS"
} >> "$conf"
exec redis-sentinel "$conf"
`;

// A master that is stopping (a rolling update, a config change, a drain) hands over first: a
// Sentinel-led failover to an in-sync replica takes about a second, while a master that just
// disappears is noticed only after down-after-milliseconds and then failed over. Sentinel would
// also promote a replica that restarted and has not finished its resync, whose data set lacks
// what was acked meanwhile, so the hand-over waits (HANDOVER_WAIT_SECONDS) for a replica the
// master reports online with at most a second of lag, and otherwise leaves the stop as it was.
// Replicas and Sentinels that cannot help leave the stop as it was too.
const PRE_STOP_REDIS = `#!/bin/sh
cli() { REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli --no-auth-warning -p ${PORTS.redis} "$@" 2>/dev/null; }
role() { cli role | head -1; }
in_sync() { cli info replication | tr -d '\\r' | grep -E '^slave[0-9]+:.*state=online' | sed -n 's/.*lag=\\([0-9]*\\).*/\\1/p' | grep -qE '^[01]$'; }
[ "$(role)" = master ] || exit 0
i=0
until in_sync; do
  [ "$i" -lt "\${HANDOVER_WAIT_SECONDS:-25}" ] || { echo "no replica in sync: no hand-over" >&2; exit 0; }
  sleep 1; i=$((i + 1))
done
# A Sentinel still holding the replica's INFO from before its resync refuses (NOGOODSLAVE) until
# it refreshes it: ask again for a few seconds.
asked() {
  for s in $SENTINELS; do
    timeout 3 redis-cli -h "\${s%:*}" -p "\${s##*:}" sentinel failover "$MASTER_NAME" 2>/dev/null | grep -q OK && return 0
  done
  return 1
}
i=0
until asked || [ "$i" -ge 10 ]; do sleep 1; i=$((i + 1)); done
i=0
while [ "$(role)" = master ] && [ "$i" -lt 20 ]; do sleep 1; i=$((i + 1)); done
exit 0
`;

export class RedisSentinel extends Construct {
  /** `host:port` of every Sentinel, for the service's REDIS_SENTINELS. */
  readonly sentinelAddresses: string[];
  readonly masterName = REDIS_MASTER_NAME;

  constructor(scope: Construct, id: string, props: RedisSentinelProps) {
    super(scope, id);
    const { preset, namespace } = props;
    const r = preset.redis;
    const domain = props.clusterDomain ?? 'cluster.local';
    const secret = props.passwordSecret ?? SECRETS.redis;
    const redisName = nameOf('redis');
    const sentinelName = nameOf('sentinel');
    const redisHeadless = `${redisName}-headless`;
    const sentinelHeadless = `${sentinelName}-headless`;
    const redisDomain = `${redisHeadless}.${namespace}.svc.${domain}`;
    const sentinelDomain = `${sentinelHeadless}.${namespace}.svc.${domain}`;
    this.sentinelAddresses = Array.from({ length: r.sentinel.replicas }, (_, i) => `${sentinelName}-${i}.${sentinelDomain}:${PORTS.sentinel}`);

    const config = {
      'redis.conf': renderRedisConf(preset, { port: PORTS.redis, dir: '/data' }),
      'sentinel.conf': renderSentinelConf(preset, { masterHost: '__MASTER_HOST__', masterPort: PORTS.redis, masterName: REDIS_MASTER_NAME, port: PORTS.sentinel, dir: '/run/sentinel', announceHostname: '__SELF__' })
        .split('\n').filter((l) => !l.startsWith('sentinel announce-ip')).join('\n'),
      'start-redis.sh': START_REDIS,
      'start-sentinel.sh': START_SENTINEL,
      'pre-stop-redis.sh': PRE_STOP_REDIS,
    };
    new k8s.KubeConfigMap(this, 'config', { metadata: { name: redisName, labels: labels('redis') }, data: config });
    // Both start scripts copy their file once: only a new pod reads a changed one.
    const redisHash = { [CONFIG_HASH_ANNOTATION]: configHash(config['redis.conf'], config['start-redis.sh'], config['pre-stop-redis.sh']) };
    const sentinelHash = { [CONFIG_HASH_ANNOTATION]: configHash(config['sentinel.conf'], config['start-sentinel.sh']) };

    const passwordEnv: k8s.EnvVar = { name: 'REDIS_PASSWORD', valueFrom: { secretKeyRef: { name: secret, key: 'password' } } };
    const podName: k8s.EnvVar = { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } };
    const sentinelsEnv: k8s.EnvVar = { name: 'SENTINELS', value: this.sentinelAddresses.join(' ') };
    const configVolume: k8s.Volume = { name: 'config', configMap: { name: redisName, defaultMode: 0o555 } };

    for (const [svc, component, port, portName] of [
      [redisHeadless, 'redis', PORTS.redis, 'redis'],
      [sentinelHeadless, 'sentinel', PORTS.sentinel, 'sentinel'],
    ] as const) {
      new k8s.KubeService(this, `${component}-headless`, {
        metadata: { name: svc, labels: labels(component) },
        spec: {
          clusterIp: 'None',
          // Sentinels and replicas must resolve a peer before it is ready, or none ever is.
          publishNotReadyAddresses: true,
          selector: selectorLabels(component),
          ports: [{ name: portName, port, targetPort: int(port) }],
        },
      });
    }
    new k8s.KubeService(this, 'sentinel-service', {
      metadata: { name: sentinelName, labels: labels('sentinel') },
      spec: { selector: selectorLabels('sentinel'), ports: [{ name: 'sentinel', port: PORTS.sentinel, targetPort: int(PORTS.sentinel) }] },
    });

    const redisCli = (extra: string) => ({ exec: { command: ['sh', '-c', `REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -p ${PORTS.redis} ${extra}`] } });
    new k8s.KubeStatefulSet(this, 'redis', {
      metadata: { name: redisName, labels: labels('redis') },
      spec: {
        serviceName: redisHeadless,
        replicas: 1 + r.replicas,
        podManagementPolicy: 'Parallel',
        selector: { matchLabels: selectorLabels('redis') },
        updateStrategy: { type: 'RollingUpdate' },
        template: {
          metadata: { labels: labels('redis'), annotations: redisHash },
          spec: {
            securityContext: podSecurity(REDIS_UID),
            automountServiceAccountToken: false,
            affinity: preferSpread('redis'),
            // The pre-stop handover (at most ~25 s waiting for an in-sync replica, ~10 s for a
            // Sentinel to accept, ~20 s for the failover), then Redis' own shutdown (AOF fsync, RDB save).
            terminationGracePeriodSeconds: 75,
            containers: [{
              name: 'redis',
              image: preset.images.redis,
              command: ['sh', '/config/start-redis.sh'],
              env: [
                podName, passwordEnv, sentinelsEnv,
                { name: 'HEADLESS', value: redisDomain },
                { name: 'FIRST_POD', value: `${redisName}-0` },
                { name: 'MASTER_NAME', value: REDIS_MASTER_NAME },
              ],
              ports: [{ name: 'redis', containerPort: PORTS.redis }],
              resources: k8sResources(r.resources),
              securityContext: containerSecurity,
              startupProbe: { ...redisCli('ping'), periodSeconds: 5, failureThreshold: 60, timeoutSeconds: 3 },
              // A replica is ready once its link to the master is up (its resync done), so a rollout
              // moves on to the next pod, the master last, only with a replica in sync.
              readinessProbe: { ...redisCli("info replication | grep -qE '^(role:master|master_link_status:up)'"), periodSeconds: 5, timeoutSeconds: 3 },
              livenessProbe: { ...redisCli('ping'), periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 6 },
              lifecycle: { preStop: { exec: { command: ['sh', '/config/pre-stop-redis.sh'] } } },
              volumeMounts: [
                { name: 'data', mountPath: '/data' },
                { name: 'config', mountPath: '/config' },
                { name: 'run', mountPath: '/run/redis' },
              ],
            }],
            volumes: [configVolume, tmpVolume('run', '16Mi')],
          },
        },
        volumeClaimTemplates: [{
          metadata: { name: 'data', labels: labels('redis') },
          spec: {
            accessModes: ['ReadWriteOnce'],
            storageClassName: props.storageClassName,
            resources: { requests: { storage: k8s.Quantity.fromString(r.storage) } },
          },
        }],
        persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Retain', whenScaled: 'Retain' },
      },
    });

    new k8s.KubeStatefulSet(this, 'sentinel', {
      metadata: { name: sentinelName, labels: labels('sentinel') },
      spec: {
        serviceName: sentinelHeadless,
        replicas: r.sentinel.replicas,
        podManagementPolicy: 'Parallel',
        selector: { matchLabels: selectorLabels('sentinel') },
        template: {
          metadata: { labels: labels('sentinel'), annotations: sentinelHash },
          spec: {
            securityContext: podSecurity(REDIS_UID),
            automountServiceAccountToken: false,
            affinity: preferSpread('sentinel'),
            containers: [{
              name: 'sentinel',
              image: preset.images.redis,
              command: ['sh', '/config/start-sentinel.sh'],
              env: [
                podName, passwordEnv, sentinelsEnv,
                { name: 'HEADLESS', value: sentinelDomain },
                { name: 'FIRST_REDIS', value: `${redisName}-0.${redisDomain}` },
                { name: 'MASTER_NAME', value: REDIS_MASTER_NAME },
              ],
              ports: [{ name: 'sentinel', containerPort: PORTS.sentinel }],
              resources: k8sResources(r.sentinel.resources),
              securityContext: containerSecurity,
              startupProbe: { exec: { command: ['redis-cli', '-p', String(PORTS.sentinel), 'ping'] }, periodSeconds: 5, failureThreshold: 60, timeoutSeconds: 3 },
              readinessProbe: { exec: { command: ['sh', '-c', `redis-cli -p ${PORTS.sentinel} sentinel ckquorum ${REDIS_MASTER_NAME} | grep -q OK`] }, periodSeconds: 5, timeoutSeconds: 3 },
              livenessProbe: { exec: { command: ['redis-cli', '-p', String(PORTS.sentinel), 'ping'] }, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 6 },
              volumeMounts: [
                { name: 'config', mountPath: '/config' },
                { name: 'run', mountPath: '/run/sentinel' },
              ],
            }],
            volumes: [configVolume, tmpVolume('run', '16Mi')],
          },
        },
      },
    });

    disruptionBudget(this, 'redis-pdb', preset, 'redis', { maxUnavailable: int(1) });
    // A failover needs a majority of Sentinels: a drain of one node among several may not take it away.
    disruptionBudget(this, 'sentinel-pdb', preset, 'sentinel', { minAvailable: int(r.sentinel.quorum) });
  }
}
