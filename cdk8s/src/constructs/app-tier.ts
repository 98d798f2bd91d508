// The service's web and worker Deployments: one image, the role as its argument, scaled apart.
import { Construct } from 'constructs';
import { ApiObject } from 'cdk8s';
import { k8s } from 'cdk8s-plus-27';
import type { AppTier, Preset, Resources, WorkerTier } from '../presets.js';
import { ROLLOUT } from '../rollout.js';
import {
  CONFIG_HASH_ANNOTATION, configHash, containerSecurity, disruptionBudget, int, k8sResources, labels, nameOf, podSecurity, PORTS, preferSpread, pullPolicy, SECRETS, selectorLabels, str, tmpVolume,
} from './common.js';

export interface AppTierProps {
  readonly preset: Preset;
  readonly role: 'web' | 'worker';
  readonly image: string;
  /** ConfigMap with the environment both roles share. */
  readonly configMap: string;
  readonly serviceAccount: string;
  /** Environment for this role only (pool sizes, concurrency). */
  readonly env: k8s.EnvVar[];
  /** Hash of the shared ConfigMap's data: a change of it rolls the pods. */
  readonly configHash: string;
  /**
   * The init container that waits until the database holds every migration of this image
   * (`migrate check`), with the environment it connects with and its size.
   */
  readonly schemaCheck: { readonly env: k8s.EnvVar[]; readonly resources: Resources };
  /**
   * Set `spec.replicas` to the HPA ceiling and the HPA's floor to it too: the whole preset at its
   * peak, for fit tests. Normally the HPA owns the replica count and the manifest leaves it out.
   * @default false
   */
  readonly atPeak?: boolean;
  /** KEDA owns the worker's scaling (a ScaledObject instead of the HPA). @default false */
  readonly keda?: { readonly redisSentinels: string[]; readonly masterName: string; readonly listName: string };
}

/** The image's `node` user. */
const APP_UID = 1000;

/** Seconds the pod keeps serving after it is marked for termination, so endpoints drop it first. */
const PRE_STOP_SECONDS = 5;

export class AppTierDeployment extends Construct {
  constructor(scope: Construct, id: string, props: AppTierProps) {
    super(scope, id);
    const { preset, role } = props;
    const tier: AppTier | WorkerTier = role === 'web' ? preset.web : preset.worker;
    const name = nameOf(role);
    const probe = (path: string) => ({ httpGet: { path, port: str('http') }, timeoutSeconds: 3 });

    new k8s.KubeDeployment(this, 'deployment', {
      metadata: { name, labels: labels(role) },
      spec: {
        // The HPA owns the count; a manifest that pinned it would undo every scale-up on apply.
        replicas: props.atPeak ? tier.maxReplicas : undefined,
        selector: { matchLabels: selectorLabels(role) },
        revisionHistoryLimit: 5,
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: int(ROLLOUT[role].maxUnavailable), maxSurge: int(ROLLOUT[role].maxSurge) } },
        template: {
          metadata: {
            labels: labels(role),
            annotations: {
              'prometheus.io/scrape': 'true', 'prometheus.io/port': String(PORTS.http), 'prometheus.io/path': '/metrics',
              [CONFIG_HASH_ANNOTATION]: configHash(props.configHash, props.env),
            },
          },
          spec: {
            serviceAccountName: props.serviceAccount,
            automountServiceAccountToken: false,
            securityContext: podSecurity(APP_UID),
            affinity: preferSpread(role),
            // The service drains within 30 s of SIGTERM (in-flight requests and jobs), after the pre-stop pause.
            terminationGracePeriodSeconds: 30 + PRE_STOP_SECONDS + 5,
            // New code never meets an older schema: the pod starts only once the migration Job of
            // its image (or a later one) has run. `make deploy` runs that Job first. A database
            // the check cannot reach does not hold the pod (the web must ack through an outage).
            initContainers: [{
              name: 'schema',
              image: props.image,
              imagePullPolicy: pullPolicy(props.image),
              args: ['migrate', 'check'],
              envFrom: [{ configMapRef: { name: props.configMap } }, { secretRef: { name: SECRETS.app } }],
              env: props.schemaCheck.env,
              resources: k8sResources(props.schemaCheck.resources),
              securityContext: containerSecurity,
              volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
            }],
            containers: [{
              name: role,
              image: props.image,
              imagePullPolicy: pullPolicy(props.image),
              args: [role],
              ports: [{ name: 'http', containerPort: PORTS.http }],
              envFrom: [{ configMapRef: { name: props.configMap } }, { secretRef: { name: SECRETS.app } }],
              env: props.env,
              resources: k8sResources(tier.resources),
              securityContext: containerSecurity,
              startupProbe: { ...probe('/healthz'), periodSeconds: 2, failureThreshold: 30 },
              readinessProbe: { ...probe('/readyz'), periodSeconds: 5, failureThreshold: 2 },
              livenessProbe: { ...probe('/healthz'), periodSeconds: 10, failureThreshold: 6 },
              lifecycle: { preStop: { exec: { command: ['sleep', String(PRE_STOP_SECONDS)] } } },
              volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
            }],
            volumes: [tmpVolume('tmp', '256Mi')],
          },
        },
      },
    });

    // The worker's Service only names its pods for Prometheus (ServiceMonitor): nothing calls it.
    new k8s.KubeService(this, 'service', {
      metadata: { name, labels: labels(role) },
      spec: {
        selector: selectorLabels(role),
        ...(role === 'worker' ? { clusterIp: 'None' } : {}),
        ports: [{ name: 'http', port: PORTS.http, targetPort: str('http') }],
      },
    });

    disruptionBudget(this, 'pdb', preset, role, { maxUnavailable: int(1) });

    const minReplicas = props.atPeak ? tier.maxReplicas : tier.replicas;
    const behavior: k8s.HorizontalPodAutoscalerBehaviorV2 = {
      // Scale up at once when load arrives; scale down only after 5 minutes of lower load, at most
      // half the pods a minute, so a bursty inbox does not flap.
      scaleUp: { stabilizationWindowSeconds: 0, selectPolicy: 'Max', policies: [{ type: 'Percent', value: 100, periodSeconds: 30 }, { type: 'Pods', value: 2, periodSeconds: 30 }] },
      scaleDown: { stabilizationWindowSeconds: 300, selectPolicy: 'Min', policies: [{ type: 'Percent', value: 50, periodSeconds: 60 }] },
    };
    if (role === 'worker' && props.keda) {
      this.scaledObject(name, minReplicas, tier.maxReplicas, tier.targetCpuUtilization, (tier as WorkerTier).keda.queueDepthPerReplica, behavior, props.keda);
      return;
    }
    new k8s.KubeHorizontalPodAutoscalerV2(this, 'hpa', {
      metadata: { name, labels: labels(role) },
      spec: {
        scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
        minReplicas,
        maxReplicas: tier.maxReplicas,
        metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: tier.targetCpuUtilization } } }],
        behavior,
      },
    });
  }

  /** KEDA: scale workers on the inbound backlog (BullMQ's wait list) as well as on CPU. */
  private scaledObject(
    name: string, min: number, max: number, cpu: number, depth: number,
    behavior: k8s.HorizontalPodAutoscalerBehaviorV2, keda: NonNullable<AppTierProps['keda']>,
  ): void {
    new ApiObject(this, 'trigger-auth', {
      apiVersion: 'keda.sh/v1alpha1',
      kind: 'TriggerAuthentication',
      metadata: { name, labels: labels('worker') },
      spec: { secretTargetRef: [{ parameter: 'password', name: SECRETS.redis, key: 'password' }] },
    });
    new ApiObject(this, 'scaled-object', {
      apiVersion: 'keda.sh/v1alpha1',
      kind: 'ScaledObject',
      metadata: { name, labels: labels('worker') },
      spec: {
        scaleTargetRef: { name },
        minReplicaCount: min,
        maxReplicaCount: max,
        pollingInterval: 15,
        cooldownPeriod: 300,
        advanced: { horizontalPodAutoscalerConfig: { behavior } },
        triggers: [
          {
            type: 'redis-sentinel',
            metadata: {
              addresses: keda.redisSentinels.join(','),
              sentinelMaster: keda.masterName,
              listName: keda.listName,
              listLength: String(depth),
            },
            authenticationRef: { name },
          },
          { type: 'cpu', metricType: 'Utilization', metadata: { value: String(cpu) } },
        ],
      },
    });
  }
}
