// Children's status → the resource's status: per-component readiness, and the Ready, Progressing
// and Degraded conditions as metav1.Condition (a transition time moves only when the status does).
import { COMPONENTS, type Component } from './crd.js';
import type { KubeObject } from './kube-api.js';
import type { Condition } from './render.js';

export interface ComponentStatus {
  ready: number;
  desired: number;
}

const COMPONENT_OF: Record<string, Component> = { migrate: 'migration' };

/**
 * Ready and desired pods of one workload (a Job counts 1 of 1 once it succeeded). A Deployment or
 * StatefulSet counts as ready only once its rollout is complete, as `kubectl rollout status` has
 * it: pods of an older template may still be ready while the new ones never become so.
 */
export function workloadReadiness(o: KubeObject): ComponentStatus {
  const spec = (o['spec'] ?? {}) as { replicas?: number };
  const status = (o['status'] ?? {}) as {
    readyReplicas?: number; availableReplicas?: number; updatedReplicas?: number; replicas?: number;
    succeeded?: number; observedGeneration?: number; currentRevision?: string; updateRevision?: string;
  };
  if (o.kind === 'Job') return { ready: (status.succeeded ?? 0) > 0 ? 1 : 0, desired: 1 };
  const desired = spec.replicas ?? status.replicas ?? 1;
  if ((status.observedGeneration ?? 0) < (o.metadata.generation ?? 0)) return { ready: 0, desired };
  const updated = status.updatedReplicas ?? 0;
  if (o.kind === 'StatefulSet') {
    const ready = status.readyReplicas ?? 0;
    if (status.updateRevision === status.currentRevision && ready >= desired) return { ready: desired, desired };
    return { ready: Math.max(0, Math.min(ready, updated, desired - 1)), desired };
  }
  const available = status.availableReplicas ?? 0;
  const old = (status.replicas ?? 0) - updated;
  if (updated >= desired && old === 0 && available >= desired) return { ready: desired, desired };
  // Mid-rollout: at most the available pods beyond the old ones are new, and never all of them.
  return { ready: Math.max(0, Math.min(updated, available - old, desired - 1)), desired };
}

/** Readiness by component of the workloads among `objects` (live objects, or undefined where missing). */
export function componentStatus(workloads: { desired: KubeObject; live: KubeObject | undefined }[]): Partial<Record<Component, ComponentStatus>> {
  const out: Partial<Record<Component, ComponentStatus>> = {};
  for (const { desired, live } of workloads) {
    const label = desired.metadata.labels?.['app.kubernetes.io/component'] ?? '';
    const component = (COMPONENT_OF[label] ?? label) as Component;
    if (!COMPONENTS.includes(component)) continue;
    const r = live ? workloadReadiness(live) : { ready: 0, desired: workloadReadiness(desired).desired };
    const prev = out[component];
    out[component] = prev ? { ready: prev.ready + r.ready, desired: prev.desired + r.desired } : r;
  }
  return out;
}

/** Sets a condition in the list, keeping its transition time when its status is unchanged. */
export function setCondition(list: Condition[], next: Omit<Condition, 'lastTransitionTime'>, now: string): Condition[] {
  const prev = list.find((c) => c.type === next.type);
  const lastTransitionTime = prev && prev.status === next.status ? prev.lastTransitionTime : now;
  return [...list.filter((c) => c.type !== next.type), { ...next, lastTransitionTime }].sort((a, b) => a.type.localeCompare(b.type));
}
