// The operator's pure parts: the CRD's schema (structural, from the preset schema), the rendering
// of a resource, and the work queue's guarantees. Its behaviour against an API server is in k8s-tests.
import { describe, expect, it } from 'vitest';
import { overridesSchema, whatsAppRouterCrd } from '../src/operator/crd.js';
import { synthManifests } from '../src/synth.js';
import type { KubeObject } from '../src/operator/kube-api.js';
import { applySetId, leaveReplicasToAutoscalers, render, type WhatsAppRouter } from '../src/operator/render.js';
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
    expect([...names].sort()).toEqual(['team-a-app', 'team-a-redis', 'wa-router-pgbouncer', 'wa-router-postgres']);
    // The HPAs own web's and worker's replicas; PgBouncer has none.
    const replicas = Object.fromEntries(r.objects.filter((o) => o.kind === 'Deployment').map((d) => [d.metadata.name, (d['spec'] as { replicas?: number }).replicas]));
    expect(replicas).toEqual({ 'wa-router-web': undefined, 'wa-router-worker': undefined, 'wa-router-pgbouncer': 1 });
    // A rendering that does set them (every tier at its ceiling) loses them where an autoscaler scales.
    const atPeak = synthManifests('minimal', { atPeak: true, overrides: { worker: { keda: { enabled: true } } } }) as unknown as KubeObject[];
    leaveReplicasToAutoscalers(atPeak);
    expect(Object.fromEntries(atPeak.filter((o) => o.kind === 'Deployment').map((d) => [d.metadata.name, (d['spec'] as { replicas?: number }).replicas]))).toEqual({ 'wa-router-web': undefined, 'wa-router-worker': undefined, 'wa-router-pgbouncer': 1 });
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
