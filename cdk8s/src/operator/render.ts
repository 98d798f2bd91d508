// A WhatsAppRouter's desired objects: the same chart `make synth` writes, rendered in memory for
// the resource's namespace, then marked as the resource's own (owner reference for the garbage
// collector, ApplySet labels for pruning). Validation comes first and names fields as they are
// spelled in the resource.
import { createHash } from 'node:crypto';
import { configHash, SECRETS } from '../constructs/common.js';
import { DEFAULT_IMAGE, synthManifests } from '../synth.js';
import { PresetValidationError, type ValidationIssue } from '../validate.js';
import { API_VERSION, GROUP, KIND } from './crd.js';
import type { KubeObject, ObjectMeta } from './kube-api.js';
import pkg from '../../package.json' with { type: 'json' };

export interface WhatsAppRouterSpec {
  preset: string;
  overrides?: Record<string, unknown>;
  image?: string;
  secrets?: Partial<Record<keyof typeof SECRETS, string>>;
  paused?: boolean;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export interface WhatsAppRouter {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta & { uid: string; namespace: string; generation: number };
  spec: WhatsAppRouterSpec;
  status?: Record<string, unknown> & { conditions?: Condition[]; observedGeneration?: number };
}

// ApplySet (KEP-3659) keys as kubectl's `apply --prune --applyset` writes them: the resource is the
// parent of the set, so kubectl and other tools recognise the set and who manages it.
export const PART_OF_LABEL = 'applyset.kubernetes.io/part-of';
export const APPLYSET_ID_LABEL = 'applyset.kubernetes.io/id';
export const TOOLING_ANNOTATION = 'applyset.kubernetes.io/tooling';
export const GROUP_KINDS_ANNOTATION = 'applyset.kubernetes.io/contains-group-kinds';

/** `<tool>/<semver>`: kubectl refuses to change a set whose tool name is not its own. */
export const TOOLING = `wa-router-operator/v${pkg.version}`;

/** The ApplySet id of a parent object: base64url of sha256 of name.namespace.kind.group, as kubectl computes it. */
export function applySetIdOf(parent: { name: string; namespace: string; kind: string; group: string }): string {
  const hash = createHash('sha256').update(`${parent.name}.${parent.namespace}.${parent.kind}.${parent.group}`).digest('base64url');
  return `applyset-${hash}-v1`;
}

export function applySetId(cr: Pick<WhatsAppRouter, 'metadata'>): string {
  return applySetIdOf({ name: cr.metadata.name, namespace: cr.metadata.namespace, kind: KIND, group: GROUP });
}

/** An object's group kind as the contains-group-kinds annotation spells it (`Deployment.apps`, `ConfigMap`). */
export function groupKind(o: Pick<KubeObject, 'apiVersion' | 'kind'>): string {
  const group = o.apiVersion.includes('/') ? o.apiVersion.split('/')[0] : '';
  return group ? `${o.kind}.${group}` : o.kind;
}

/** The annotation's value: distinct group kinds, sorted (a stable value spares needless writes). */
export function groupKindsValue(kinds: Iterable<string>): string {
  return [...new Set(kinds)].filter(Boolean).sort().join(',');
}

export type Rendering =
  | { readonly ok: true; readonly objects: KubeObject[]; readonly image: string }
  | { readonly ok: false; readonly issues: ValidationIssue[] };

/** Rewrites references to the default Secret names into the resource's own. */
function renameSecrets(node: unknown, names: Map<string, string>): void {
  if (Array.isArray(node)) {
    for (const x of node) renameSecrets(x, names);
    return;
  }
  if (typeof node !== 'object' || node === null) return;
  const o = node as Record<string, unknown>;
  for (const [k, v] of Object.entries(o)) {
    if ((k === 'secretKeyRef' || k === 'secretRef') && typeof v === 'object' && v !== null) {
      const ref = v as { name?: string };
      if (ref.name && names.has(ref.name)) ref.name = names.get(ref.name);
    } else if (k === 'secret' && typeof v === 'object' && v !== null) {
      const vol = v as { secretName?: string };
      if (vol.secretName && names.has(vol.secretName)) vol.secretName = names.get(vol.secretName);
    } else if (k === 'secretTargetRef' && Array.isArray(v)) {
      for (const ref of v as { name?: string }[]) if (ref.name && names.has(ref.name)) ref.name = names.get(ref.name);
    } else {
      renameSecrets(v, names);
    }
  }
}

/**
 * Drops `replicas` from every workload an autoscaler (HPA, KEDA) scales: the field is the
 * autoscaler's, and applying it would reset the scale on every reconcile.
 */
export function leaveReplicasToAutoscalers(objects: readonly KubeObject[]): void {
  const scaled = new Set<string>();
  for (const o of objects) {
    if (o.kind !== 'HorizontalPodAutoscaler' && o.kind !== 'ScaledObject') continue;
    const ref = (o['spec'] as { scaleTargetRef?: { kind?: string; name: string } }).scaleTargetRef;
    if (ref) scaled.add(`${ref.kind ?? 'Deployment'}/${ref.name}`);
  }
  for (const o of objects) {
    const s = o['spec'] as { replicas?: number } | undefined;
    if (s && scaled.has(`${o.kind}/${o.metadata.name}`)) delete s.replicas;
  }
}

export function render(cr: WhatsAppRouter): Rendering {
  const { spec } = cr;
  const image = spec.image ?? DEFAULT_IMAGE;
  let manifests;
  try {
    manifests = synthManifests(spec.preset, { namespace: cr.metadata.namespace, image, overrides: spec.overrides ?? {} });
  } catch (err) {
    if (!(err instanceof PresetValidationError)) throw err;
    return {
      ok: false,
      issues: err.issues.map((i) => ({ field: i.field === 'preset' ? 'spec.preset' : i.field.split(', ').map((f) => `spec.overrides.${f}`).join(', '), message: i.message })),
    };
  }
  const names = new Map(Object.entries(spec.secrets ?? {}).map(([k, v]) => [SECRETS[k as keyof typeof SECRETS], v!] as const));
  const owner = { apiVersion: API_VERSION, kind: KIND, name: cr.metadata.name, uid: cr.metadata.uid, controller: true, blockOwnerDeletion: true };
  const id = applySetId(cr);
  // The resource lives in its namespace already; it cannot own it (a namespaced owner of a
  // cluster-scoped object would be collected at once).
  const objects = manifests.filter((m) => m.kind !== 'Namespace').map((m) => structuredClone(m) as unknown as KubeObject);
  for (const o of objects) {
    if (names.size) {
      renameSecrets(o, names);
      // A Job's template is immutable: the Secrets it reads are part of its name, as its image is.
      if (o.kind === 'Job') o.metadata.name = `${o.metadata.name.replace(/-[0-9a-f]{8}$/, '')}-${configHash(o.metadata.name, [...names].sort()).slice(0, 8)}`;
    }
    o.metadata.labels = { ...o.metadata.labels, [PART_OF_LABEL]: id };
    o.metadata.ownerReferences = [owner];
  }
  leaveReplicasToAutoscalers(objects);
  return { ok: true, objects, image };
}
