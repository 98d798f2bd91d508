// Every preset on a real API server: server-side apply is clean and idempotent,
// the controllers turn workloads into pods, and the scheduler proves (or refutes) the node-pool
// fit claim. Runs against our local control plane, or any cluster with K8S_TESTS_KUBECONFIG.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { PRESET_NAMES, PresetValidationError, peakPods, presets, synthManifests, type Manifest } from '@wa-router/cdk8s';
import { deleteNamespace, podsOf, provideVolumes, registerNodePool, removeNodePool } from '../src/cluster.js';
import { eventually, FIELD_MANAGER, Kube, type KubeObject } from '../src/kube.js';

const kube = new Kube(inject('kubeconfig'));
const local = inject('localControlPlane');

/** KEDA's two kinds, enough schema for the API server to store them. */
const KEDA_CRDS = ['ScaledObject', 'TriggerAuthentication'].map((kind) => ({
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `${kind.toLowerCase()}s.keda.sh` },
  spec: {
    group: 'keda.sh',
    scope: 'Namespaced',
    names: { kind, plural: `${kind.toLowerCase()}s`, singular: kind.toLowerCase(), listKind: `${kind}List` },
    versions: [{ name: 'v1alpha1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
  },
}));

const key = (o: { kind: string; metadata: { name: string } }) => `${o.kind}/${o.metadata.name}`;

describe.each(PRESET_NAMES)('%s', (name) => {
  const namespace = `wa-${name}`;
  const preset = presets[name];
  const manifests = synthManifests(name, { namespace });

  beforeAll(async () => {
    if (local) {
      await registerNodePool(kube, preset);
      await provideVolumes(kube, synthManifests(name, { namespace, atPeak: true }));
    }
  });
  afterAll(async () => {
    await deleteNamespace(kube, namespace);
    if (local) await removeNodePool(kube, preset);
  });

  // Field managers and pruning as a user gets them are checked through `make deploy` (deploy.test.ts).
  it('server-side apply succeeds with no warnings', async () => {
    const { objects, warnings } = await kube.applyAll(manifests);
    expect(warnings).toEqual([]);
    expect(objects.map(key)).toEqual(manifests.map(key));
    // HPAs, NetworkPolicies and the migration Job are among what the server accepted (PDBs only
    // on pools of several nodes: see the multi-node case below).
    for (const kind of ['HorizontalPodAutoscaler', 'NetworkPolicy', 'Job', 'StatefulSet', 'Deployment']) {
      expect(objects.some((o) => o.kind === kind), kind).toBe(true);
    }
  });

  it('applying again changes nothing: same resourceVersions and generations', async () => {
    const paths = await Promise.all(manifests.map((m) => kube.objectPath(m)));
    const before = await Promise.all(paths.map((p) => kube.get<KubeObject>(p)));
    const { warnings } = await kube.applyAll(manifests);
    expect(warnings).toEqual([]);
    const after = await Promise.all(paths.map((p) => kube.get<KubeObject>(p)));
    // Our Apply entry keeps its timestamp only if the apply wrote nothing; the resourceVersion
    // too, except on the Job, whose status its controller may still be writing.
    const ours = (o: KubeObject) => (o.metadata.managedFields ?? []).find((f) => f.manager === FIELD_MANAGER && f.operation === 'Apply');
    const versions = (list: (KubeObject | undefined)[]) => list.filter((o): o is KubeObject => !!o).map((o) =>
      `${key(o)}@${o.kind === 'Job' ? '' : o.metadata.resourceVersion}/${o.metadata.generation ?? '-'}/${ours(o)?.time ?? 'not ours'}`);
    expect(versions(after)).toEqual(versions(before));
  });

  it('the KEDA variant is accepted once its CRDs are installed', async () => {
    await kube.applyAll(KEDA_CRDS as unknown as Manifest[]);
    await eventually('KEDA CRDs established', async () => {
      for (const crd of KEDA_CRDS) {
        const c = await kube.get<KubeObject & { status?: { conditions?: { type: string; status: string }[] } }>(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
        if (!c?.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True')) return false;
      }
      return true;
    });
    const keda = synthManifests(name, { namespace, overrides: { worker: { keda: { enabled: true } } } });
    const { objects, warnings } = await kube.applyAll(keda.filter((m) => m.apiVersion.startsWith('keda.sh/')), { dryRun: true });
    expect(warnings).toEqual([]);
    expect(objects.map((o) => o.kind).sort()).toEqual(['ScaledObject', 'TriggerAuthentication']);
  });

  it('on a pool of two nodes the PodDisruptionBudgets are accepted too', async () => {
    const two = synthManifests(name, { namespace, overrides: { nodePool: { nodes: 2 } } }).filter((m) => m.kind === 'PodDisruptionBudget');
    expect(two.length).toBeGreaterThan(0);
    const { objects, warnings } = await kube.applyAll(two, { dryRun: true });
    expect(warnings).toEqual([]);
    expect(objects.map(key)).toEqual(two.map(key));
  });

  it('an invalid override never reaches the server', () => {
    expect(() => synthManifests(name, { namespace, overrides: { redis: { maxmemory: '64gb' } } })).toThrow(PresetValidationError);
  });

  it.runIf(local)('at its HPA ceilings every pod is created and bound on the documented node pool', async () => {
    const peak = synthManifests(name, { namespace, atPeak: true });
    await kube.applyAll(peak);
    const expected = peakPods(preset).reduce((n, p) => n + p.count, 0);
    const pods = await eventually(`${expected} pods bound`, async () => {
      const list = await podsOf(kube, namespace);
      return list.length >= expected && list.every((p) => p.nodeName) ? list : false;
    }, 120_000, 1_000).catch(async (err: Error) => {
      throw new Error(`${err.message}; now: ${JSON.stringify(await podsOf(kube, namespace))}`);
    });
    expect(pods).toHaveLength(expected);
    const rs = await kube.list(`/apis/apps/v1/namespaces/${namespace}/replicasets`);
    expect(rs.length).toBeGreaterThanOrEqual(3);
  });

  it.runIf(local)('on a node pool 25% smaller, pods stay Pending for insufficient CPU or memory', async () => {
    await removeNodePool(kube, preset);
    for (const p of await podsOf(kube, namespace)) await kube.delete(`/api/v1/namespaces/${namespace}/pods/${p.name}`, 0);
    await registerNodePool(kube, preset, 0.75);
    // Between the old nodes going and the smaller ones coming the scheduler may say "no nodes";
    // what counts is the verdict on the smaller pool.
    const pending = await eventually('a pod unschedulable for insufficient resources', async () => {
      const stuck = (await podsOf(kube, namespace)).filter((p) => /Insufficient (cpu|memory)/.test(p.unschedulable ?? ''));
      return stuck.length > 0 ? stuck : false;
    }, 120_000, 1_000);
    expect(pending[0]!.unschedulable).toMatch(/Insufficient (cpu|memory)/);
    // The rest of the preset still fits: only what exceeds the smaller pool is left Pending.
    const all = await podsOf(kube, namespace);
    expect(all.filter((p) => p.nodeName).length).toBeGreaterThan(0);
  });
});

describe.runIf(local)('the Prometheus Operator CRDs installed by the suite', () => {
  it('are the real schemas: a PrometheusRule with a malformed for: is refused, the synthesized one accepted', async () => {
    const namespace = 'wa-monitoring-crds';
    const manifests = synthManifests('minimal', { namespace });
    const rule = manifests.find((m) => m.kind === 'PrometheusRule')!;
    await kube.applyAll(manifests.filter((m) => m.kind === 'Namespace'));
    try {
      expect((await kube.apply(rule, { dryRun: true })).status).toBeLessThan(300);
      const bad = structuredClone(rule) as Manifest & { spec: { groups: { rules: { for?: string }[] }[] } };
      bad.spec.groups[0]!.rules[0]!.for = 'five minutes';
      const refused = await kube.apply(bad, { dryRun: true });
      expect(refused.status).toBe(422);
      expect(JSON.stringify(refused.body)).toMatch(/for/);
    } finally {
      await deleteNamespace(kube, namespace);
    }
  });
});
