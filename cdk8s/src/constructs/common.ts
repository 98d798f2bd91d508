// What every component shares: names, labels, the restricted security posture, resources.
import { createHash } from 'node:crypto';
import type { Construct } from 'constructs';
import { k8s } from 'cdk8s-plus-27';
import type { Preset, Resources } from '../presets.js';

export const APP = 'wa-router';

/** Object name of a component: `wa-router-web`, `wa-router-redis`, ... */
export function nameOf(component: string): string {
  return `${APP}-${component}`;
}

/** The labels a component's pods are selected by (stable: selectors are immutable). */
export function selectorLabels(component: string): Record<string, string> {
  return { 'app.kubernetes.io/name': APP, 'app.kubernetes.io/component': component };
}

/** Selector + the recommended labels, for metadata and pod templates. */
export function labels(component: string): Record<string, string> {
  return {
    ...selectorLabels(component),
    'app.kubernetes.io/part-of': APP,
    'app.kubernetes.io/managed-by': APP,
  };
}

export function k8sResources(r: Resources): k8s.ResourceRequirements {
  return {
    requests: { cpu: k8s.Quantity.fromString(String(r.requests.cpu)), memory: k8s.Quantity.fromString(r.requests.memory) },
    limits: { cpu: k8s.Quantity.fromString(String(r.limits.cpu)), memory: k8s.Quantity.fromString(r.limits.memory) },
  };
}

/** Pod-level settings of the `restricted` Pod Security Standard, for an image's user. */
export function podSecurity(uid: number): k8s.PodSecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: uid,
    fsGroup: uid,
    fsGroupChangePolicy: 'OnRootMismatch',
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

/** Container-level settings of the `restricted` standard, plus a read-only root filesystem. */
export const containerSecurity: k8s.SecurityContext = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
};

/** Spread replicas over nodes when there are several; never refuse to schedule on one. */
export function preferSpread(component: string): k8s.Affinity {
  return {
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [
        { weight: 100, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: selectorLabels(component) } } },
      ],
    },
  };
}

export function tmpVolume(name = 'tmp', sizeLimit = '64Mi'): k8s.Volume {
  return { name, emptyDir: { sizeLimit: k8s.Quantity.fromString(sizeLimit) } };
}

/**
 * A digest names one build, which the node may keep; a tag may be pushed again, so every pod start
 * asks the registry (else a restarted pod keeps running the node's old copy of the tag).
 */
export function pullPolicy(image: string): 'Always' | 'IfNotPresent' {
  return image.includes('@sha256:') ? 'IfNotPresent' : 'Always';
}

export const int = (n: number) => k8s.IntOrString.fromNumber(n);
export const str = (s: string) => k8s.IntOrString.fromString(s);

/** Secret names the manifests read and the operator (or scripts/deploy.sh) creates. */
export const SECRETS = {
  /** WHATSAPP_APP_SECRET, WHATSAPP_VERIFY_TOKEN, API_TOKEN, optionally the bootstrap channel. */
  app: nameOf('app'),
  /** `username`, `password` of the database owner. */
  postgres: nameOf('postgres'),
  /** `password` of Redis (Sentinels use it to reach the master). */
  redis: nameOf('redis'),
  /** `userlist.txt` for PgBouncer. */
  pgbouncer: nameOf('pgbouncer'),
  /** `accessKeyId`, `secretAccessKey` of the media bucket (optional: pods may get an instance role instead), and `urlSecret`, the optional key of `media.url` signatures. */
  media: nameOf('media'),
} as const;

export const PORTS = { http: 3000, redis: 6379, sentinel: 26379, pgbouncer: 6432, postgres: 5432 } as const;
export const DATABASE = 'wa_router';
export const REDIS_MASTER_NAME = 'wa-router';

/**
 * Pod-template annotation holding a hash of what the pods read from ConfigMaps and the manifest:
 * a change of it rolls the pods, so a config change reaches running processes (files copied at
 * start, `subPath` mounts and environment variables are otherwise never refreshed).
 */
export const CONFIG_HASH_ANNOTATION = 'wa-router.io/config-hash';

export function configHash(...parts: unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

/**
 * A PodDisruptionBudget, only where a drain can honour it. On a one-node pool every replacement
 * pod is Pending on the cordoned node, so any budget that keeps a pod stops `kubectl drain` for
 * good; there, draining the node is a planned outage (README, "Day 2") and no budget is written.
 */
export function disruptionBudget(scope: Construct, id: string, preset: Preset, component: string, budget: Pick<k8s.PodDisruptionBudgetSpec, 'maxUnavailable' | 'minAvailable'>): void {
  if (preset.nodePool.nodes < 2) return;
  new k8s.KubePodDisruptionBudget(scope, id, {
    metadata: { name: nameOf(component), labels: labels(component) },
    spec: {
      ...budget,
      selector: { matchLabels: selectorLabels(component) },
      // A pod that is running but not ready protects nothing; let a drain take it.
      unhealthyPodEvictionPolicy: 'AlwaysAllow',
    },
  });
}
