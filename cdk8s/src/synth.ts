// Preset → manifests, in memory. The CLI writes them; tests and the operator use them directly.
import { App } from 'cdk8s';
import { WaRouterChart } from './charts/wa-router-chart.js';
import type { Preset } from './presets.js';
import { PresetValidationError, resolvePreset, type PresetOverrides, type ValidationIssue } from './validate.js';

export const DEFAULT_IMAGE = 'ghcr.io/wa-router/wa-router:latest';
export const DEFAULT_NAMESPACE = 'wa-router';

export interface SynthOptions {
  /** @default 'wa-router' */
  readonly namespace?: string;
  /** @default 'ghcr.io/wa-router/wa-router:latest' */
  readonly image?: string;
  /** Any preset field, deeply merged over the preset and checked with it. */
  readonly overrides?: PresetOverrides | Record<string, unknown>;
  /** Every Deployment at its HPA ceiling: what the node-pool fit claim is about. @default false */
  readonly atPeak?: boolean;
  /** @default 'cluster.local' */
  readonly clusterDomain?: string;
  /** @default the cluster's default StorageClass */
  readonly storageClassName?: string;
}

/** A Kubernetes object as plain data (what `kubectl apply` sends). */
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

const CLUSTER_SCOPED = new Set(['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding', 'PersistentVolume', 'StorageClass']);

/** A resolved preset's manifests. Use `synthManifests` to start from a name and overrides. */
export function synthPreset(preset: Preset, opts: Omit<SynthOptions, 'overrides'> = {}): Manifest[] {
  const app = new App({ outdir: '/nonexistent', recordConstructMetadata: false });
  const chart = new WaRouterChart(app, preset.name, {
    preset,
    namespace: opts.namespace ?? DEFAULT_NAMESPACE,
    image: opts.image ?? DEFAULT_IMAGE,
    atPeak: opts.atPeak,
    clusterDomain: opts.clusterDomain,
    storageClassName: opts.storageClassName,
  });
  const manifests = (chart.toJson() as Manifest[]).map((m) => {
    if (CLUSTER_SCOPED.has(m.kind)) delete m.metadata.namespace;
    return m;
  });
  const issues = checkManifests(manifests);
  if (issues.length) throw new PresetValidationError(preset.name, issues);
  return manifests;
}

/**
 * The manifests of a preset by name, with overrides, validated before and after synthesis.
 * @throws PresetValidationError naming every field that is wrong or inconsistent
 */
export function synthManifests(name: string, opts: SynthOptions = {}): Manifest[] {
  return synthPreset(resolvePreset(name, opts.overrides), opts);
}

interface PodSpecLike {
  containers?: ContainerLike[];
  initContainers?: ContainerLike[];
}
interface ContainerLike {
  name: string;
  resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
  readinessProbe?: unknown;
  livenessProbe?: unknown;
}

function podSpecOf(m: Manifest): PodSpecLike | undefined {
  const spec = m['spec'] as { template?: { spec?: PodSpecLike } } | undefined;
  return spec?.template?.spec;
}

/** Every container has CPU and memory requests and limits; every long-running one has probes. */
export function checkManifests(manifests: readonly Manifest[]): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  for (const m of manifests) {
    const pod = podSpecOf(m);
    if (!pod) continue;
    const where = `${m.kind}/${m.metadata.name}`;
    for (const c of [...(pod.containers ?? []), ...(pod.initContainers ?? [])]) {
      for (const kind of ['requests', 'limits'] as const) {
        for (const res of ['cpu', 'memory']) {
          if (!c.resources?.[kind]?.[res]) issues.push({ field: `${where}.${c.name}.resources.${kind}.${res}`, message: `container ${c.name} has no ${res} ${kind.slice(0, -1)}` });
        }
      }
      // A Job's container runs to completion: probes would only restart a migration midway.
      if (m.kind !== 'Job' && m.kind !== 'CronJob' && !(pod.initContainers ?? []).includes(c)) {
        if (!c.readinessProbe) issues.push({ field: `${where}.${c.name}.readinessProbe`, message: `container ${c.name} has no readiness probe` });
        if (!c.livenessProbe) issues.push({ field: `${where}.${c.name}.livenessProbe`, message: `container ${c.name} has no liveness probe` });
      }
    }
  }
  return issues;
}
