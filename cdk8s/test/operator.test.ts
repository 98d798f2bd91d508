// The operator's pure parts: the CRD's schema (structural, from the preset schema), the rendering
// of a resource, and the work queue's guarantees. Its behaviour against an API server is in k8s-tests.
import { describe, expect, it } from 'vitest';
import { overridesSchema, whatsAppRouterCrd } from '../src/operator/crd.js';
import { synthManifests } from '../src/synth.js';
import type { KubeObject } from '../src/operator/kube-api.js';
import { applySetId, leaveReplicasToAutoscalers, render, type WhatsAppRouter } from '../src/operator/render.js';
import { setCondition, workloadReadiness } from '../src/operator/status.js';
import { WorkQueue } from '../src/operator/work-queue.js';

const router = (spec: WhatsAppRouter['spec']): WhatsAppRouter => ({
  apiVersion: 'wa-router.dev/v1alpha1', kind: 'WhatsAppRouter',
  metadata: { name: 'router', namespace: 'team-a', uid: 'uid-1', generation: 1 },
  spec,
});

/** Every schema node, with its path. */
function* nodes(schema: Record<string, unknown>, at = ''): Generator<[string, Record<string, unknown>]> {
  yield [at, schema];
  for (const [k, v] of Object.entries((schema['properties'] ?? {}) as Record<string, Record<string, unknown>>)) yield* nodes(v, `${at}.${k}`);
  if (typeof schema['additionalProperties'] === 'object') yield* nodes(schema['additionalProperties'] as Record<string, unknown>, `${at}.*`);
  if (typeof schema['items'] === 'object') yield* nodes(schema['items'] as Record<string, unknown>, `${at}[]`);
}

describe('the WhatsAppRouter CRD', () => {
  it('has a structural schema: no $ref, anyOf or additionalProperties beside properties, and nothing required in overrides', () => {
    const crd = whatsAppRouterCrd() as { spec: { versions: { schema: { openAPIV3Schema: Record<string, unknown> } }[] } };
    for (const [at, node] of nodes(crd.spec.versions[0]!.schema.openAPIV3Schema)) {
      expect(node, at).not.toHaveProperty('$ref');
      expect(node, at).not.toHaveProperty('anyOf');
      if (node['properties']) expect(node, at).not.toHaveProperty('additionalProperties');
      if (at.includes('.overrides')) expect(node, at).not.toHaveProperty('required');
      // An unknown override field must reach the preset's checks, not be pruned without a word.
      if (at.includes('.overrides') && node['type'] === 'object' && node['properties']) expect(node, at).toHaveProperty('x-kubernetes-preserve-unknown-fields', true);
    }
  });

  it('takes quantities as int-or-string and keeps the preset schema\'s limits and case-insensitive patterns', () => {
    const s = overridesSchema() as { properties: Record<string, { properties: Record<string, unknown> }> };
    const web = s.properties['web']!.properties as Record<string, { properties?: Record<string, { properties: Record<string, unknown> }>; minimum?: number; maximum?: number }>;
    expect(web['resources']!.properties!['requests']!.properties['cpu']).toEqual({ 'x-kubernetes-int-or-string': true });
    expect(web['replicas']).toMatchObject({ type: 'integer', minimum: 1, maximum: 100 });
    const buffers = (s.properties['redis']!.properties['outputBuffers'] as { properties: { replica: { pattern: string } } }).properties.replica.pattern;
    expect(buffers.startsWith('(?i)')).toBe(true);
    expect(s.properties['web']).toHaveProperty('x-kubernetes-validations');
  });
});

describe('rendering a WhatsAppRouter', () => {
  it('names every invalid field as it is spelled in the resource', () => {
    const r = render(router({ preset: 'minimal', overrides: { pgbouncer: { maxClientConn: 10 } } }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.issues.map((i) => i.field)).toContain('spec.overrides.pgbouncer.maxClientConn');
    const unknown = render(router({ preset: 'huge' }));
    expect(!unknown.ok && unknown.issues[0]!.field).toBe('spec.preset');
    const misspelled = render(router({ preset: 'minimal', overrides: { web: { replicaz: 2 } } }));
    expect(!misspelled.ok && misspelled.issues).toEqual([{ field: 'spec.overrides.web.replicaz', message: 'unknown field' }]);
  });

  it('owns every object but the namespace, labels it into the ApplySet, and points at the resource\'s Secrets', () => {
    const r = render(router({ preset: 'minimal', secrets: { app: 'team-a-app', redis: 'team-a-redis' } }));
    if (!r.ok) throw new Error('expected a rendering');
    expect(r.objects.some((o) => o.kind === 'Namespace')).toBe(false);
    for (const o of r.objects) {
      expect(o.metadata.ownerReferences).toEqual([expect.objectContaining({ uid: 'uid-1', controller: true })]);
      expect(o.metadata.labels?.['applyset.kubernetes.io/part-of']).toBe(applySetId(router({ preset: 'minimal' })));
    }
    const names = new Set<string>();
    JSON.stringify(r.objects, (key, value: unknown) => {
      if (key === 'secretKeyRef' || key === 'secretRef') names.add((value as { name: string }).name);
      if (key === 'secret') names.add((value as { secretName: string }).secretName);
      return value;
    });
    expect([...names].sort()).toEqual(['team-a-app', 'team-a-redis', 'wa-router-media', 'wa-router-pgbouncer', 'wa-router-postgres']);
    // A Job's template is immutable: other Secrets, another Job.
    const jobName = (x: ReturnType<typeof render>) => x.ok && x.objects.find((o) => o.kind === 'Job')!.metadata.name;
    const plain = render(router({ preset: 'minimal' }));
    expect(jobName(r)).toMatch(/^wa-router-migrate-[0-9a-f]{8}$/);
    expect(jobName(r)).not.toBe(jobName(plain));
    expect(jobName(render(router({ preset: 'minimal', secrets: { app: 'team-a-app' } })))).not.toBe(jobName(r));
    // The HPAs own web's and worker's replicas; PgBouncer has none.
    const replicas = Object.fromEntries(r.objects.filter((o) => o.kind === 'Deployment').map((d) => [d.metadata.name, (d['spec'] as { replicas?: number }).replicas]));
    expect(replicas).toEqual({ 'wa-router-web': undefined, 'wa-router-worker': undefined, 'wa-router-pgbouncer': 1 });
    // A rendering that does set them (every tier at its ceiling) loses them where an autoscaler scales.
    const atPeak = synthManifests('minimal', { atPeak: true, overrides: { worker: { keda: { enabled: true } } } }) as unknown as KubeObject[];
    leaveReplicasToAutoscalers(atPeak);
    expect(Object.fromEntries(atPeak.filter((o) => o.kind === 'Deployment').map((d) => [d.metadata.name, (d['spec'] as { replicas?: number }).replicas]))).toEqual({ 'wa-router-web': undefined, 'wa-router-worker': undefined, 'wa-router-pgbouncer': 1 });
  });
});

describe('workload readiness', () => {
  const deployment = (status: Record<string, unknown>): KubeObject => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'wa-router-web', generation: 2 }, spec: { replicas: 2 }, status: { observedGeneration: 2, ...status } });
  const statefulSet = (status: Record<string, unknown>): KubeObject => ({ apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'wa-router-redis', generation: 2 }, spec: { replicas: 3 }, status: { observedGeneration: 2, ...status } });

  it('counts a Deployment ready only once its rollout is complete, as kubectl rollout status does', () => {
    expect(workloadReadiness(deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 }))).toEqual({ ready: 2, desired: 2 });
    // A new template whose surge pod never becomes ready: the old pods still are.
    expect(workloadReadiness(deployment({ replicas: 3, updatedReplicas: 1, readyReplicas: 2, availableReplicas: 2 }))).toEqual({ ready: 0, desired: 2 });
    // Every new pod ready, an old one still terminating: not done yet.
    expect(workloadReadiness(deployment({ replicas: 3, updatedReplicas: 2, readyReplicas: 3, availableReplicas: 3 }))).toEqual({ ready: 1, desired: 2 });
    expect(workloadReadiness(deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 1, availableReplicas: 1 }))).toEqual({ ready: 1, desired: 2 });
    expect(workloadReadiness(deployment({ observedGeneration: 1, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 }))).toEqual({ ready: 0, desired: 2 });
  });

  it('counts a StatefulSet ready once every pod runs the update revision', () => {
    expect(workloadReadiness(statefulSet({ replicas: 3, updatedReplicas: 3, readyReplicas: 3, currentRevision: 'r2', updateRevision: 'r2' }))).toEqual({ ready: 3, desired: 3 });
    expect(workloadReadiness(statefulSet({ replicas: 3, updatedReplicas: 1, readyReplicas: 3, currentRevision: 'r1', updateRevision: 'r2' }))).toEqual({ ready: 1, desired: 3 });
  });
});

describe('conditions', () => {
  it('keep their transition time while their status holds, whatever the reason or message, and move it when it changes', () => {
    const t0 = '2026-01-01T00:00:00.000Z';
    const list = setCondition([], { type: 'Ready', status: 'False', reason: 'ComponentsNotReady', message: 'web 0/1' }, t0);
    const same = setCondition(list, { type: 'Ready', status: 'False', reason: 'ApplyFailed', message: 'quota' }, '2026-01-01T00:01:00.000Z');
    expect(same[0]).toMatchObject({ reason: 'ApplyFailed', lastTransitionTime: t0 });
    const moved = setCondition(same, { type: 'Ready', status: 'True', reason: 'AllComponentsReady', message: 'ready' }, '2026-01-01T00:02:00.000Z');
    expect(moved[0]!.lastTransitionTime).toBe('2026-01-01T00:02:00.000Z');
  });
});

describe('the work queue', () => {
  it('queues a key once, never runs one key twice at once, and reruns a key added while it ran', async () => {
    const runs: string[] = [];
    let running = 0;
    let overlap = 0;
    const release: (() => void)[] = [];
    const q = new WorkQueue(async (key) => {
      running++;
      if (running > 1) overlap++;
      runs.push(key);
      await new Promise<void>((r) => release.push(r));
      running--;
      return {};
    }, () => {}, { workers: 4 });
    q.add('a');
    q.add('a');
    q.start();
    await new Promise((r) => setTimeout(r, 10));
    q.add('a');
    q.add('a');
    expect(runs).toEqual(['a']);
    release.shift()!();
    await new Promise((r) => setTimeout(r, 10));
    expect(runs).toEqual(['a', 'a']);
    release.shift()!();
    await new Promise((r) => setTimeout(r, 10));
    expect(runs).toEqual(['a', 'a']);
    expect(overlap).toBe(0);
    await q.stop();
  });

  it('tells how long its oldest reconcile in flight has run, and 0 once none runs', async () => {
    let release = () => {};
    const q = new WorkQueue(() => new Promise((r) => (release = () => r({}))), () => {});
    q.start();
    expect(q.longestRunningMs()).toBe(0);
    q.add('hung');
    await new Promise((r) => setTimeout(r, 60));
    expect(q.longestRunningMs()).toBeGreaterThanOrEqual(50);
    release();
    await q.stop();
    expect(q.longestRunningMs()).toBe(0);
  });

  it('retries a failing key with exponential backoff', async () => {
    const at: number[] = [];
    const q = new WorkQueue(async () => {
      at.push(Date.now());
      if (at.length < 4) throw new Error('boom');
      return {};
    }, () => {}, { baseDelayMs: 20 });
    q.start();
    q.add('k');
    await new Promise((r) => setTimeout(r, 400));
    await q.stop();
    expect(at).toHaveLength(4);
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    expect(gaps[1]!).toBeGreaterThanOrEqual(gaps[0]! * 1.5);
    expect(gaps[2]!).toBeGreaterThanOrEqual(gaps[1]! * 1.5);
  });
});
