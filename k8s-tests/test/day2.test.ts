// Day-2 events on the API server with the standard preset at its HPA ceilings on its documented
// one-node pool. No kubelet runs here, so the test plays its part: it marks bound pods Ready and
// finishes the termination of pods being deleted; the scheduler, the controllers and the eviction
// API (PodDisruptionBudgets) are the real ones.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { peakPods, presets, synthManifests } from '@wa-router/cdk8s';
import { deleteNamespace, podsOf, provideVolumes, registerNodePool, removeNodePool } from '../src/cluster.js';
import { eventually, Kube, type KubeObject } from '../src/kube.js';

const kube = new Kube(inject('kubeconfig'));
const preset = presets.standard;
const namespace = 'wa-day2';
type Pod = KubeObject & { spec: { nodeName?: string }; status: { phase?: string; conditions?: { type: string; status: string }[] }; metadata: { deletionTimestamp?: string } };

const pods = () => kube.list<Pod>(`/api/v1/namespaces/${namespace}/pods`);

/** What a kubelet would do: run every bound pod to Ready, and finish deleting terminating ones. */
async function kubelet(): Promise<void> {
  for (const p of await pods()) {
    const path = `/api/v1/namespaces/${namespace}/pods/${p.metadata.name}`;
    if (p.metadata.deletionTimestamp) {
      await kube.delete(path, 0);
    } else if (p.spec.nodeName && !p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) {
      const now = new Date().toISOString();
      const ready = ['Initialized', 'ContainersReady', 'Ready', 'PodScheduled'].map((type) => ({ type, status: 'True', lastTransitionTime: now }));
      await kube.request('PATCH', `${path}/status`, { status: { phase: 'Running', conditions: ready } }, 'application/merge-patch+json');
    }
  }
}

/** `kubectl drain`: cordon, then evict every pod, retrying what a budget refuses (429). */
async function drain(node: string, timeoutMs: number): Promise<{ evicted: number; refused: string[] }> {
  await kube.request('PATCH', `/api/v1/nodes/${node}`, { spec: { unschedulable: true } }, 'application/merge-patch+json');
  const deadline = Date.now() + timeoutMs;
  const evicted = new Set<string>();
  let refused: string[];
  for (;;) {
    refused = [];
    for (const p of (await pods()).filter((x) => x.spec.nodeName === node && !x.metadata.deletionTimestamp && !evicted.has(x.metadata.name))) {
      const r = await kube.request('POST', `/api/v1/namespaces/${namespace}/pods/${p.metadata.name}/eviction`, {
        apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: p.metadata.name, namespace },
      });
      if (r.status === 201 || r.status === 200) evicted.add(p.metadata.name);
      else if (r.status === 429) refused.push(p.metadata.name);
      else if (r.status !== 404) throw new Error(`evict ${p.metadata.name}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    const left = (await pods()).filter((x) => x.spec.nodeName === node && !x.metadata.deletionTimestamp);
    if (left.length === 0 || Date.now() > deadline) return { evicted: evicted.size, refused };
    await kubelet();
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

describe.runIf(inject('localControlPlane'))('standard on its one-node pool', () => {
  const node = `${preset.name}-node-0`;
  const peak = synthManifests('standard', { namespace, atPeak: true });

  // The cluster's DaemonSets take their share of the node (nodePool.daemonSets) before ours.
  const daemons = {
    apiVersion: 'v1', kind: 'Pod', metadata: { name: 'wa-day2-daemonsets', namespace: 'default' },
    spec: { nodeName: node, containers: [{ name: 'c', image: 'registry.k8s.io/pause:3.10', resources: { requests: { ...preset.nodePool.daemonSets } } }] },
  };

  beforeAll(async () => {
    await registerNodePool(kube, preset);
    await provideVolumes(kube, peak);
    const r = await kube.request('POST', '/api/v1/namespaces/default/pods', daemons);
    if (r.status !== 201) throw new Error(`daemonset stand-in: ${r.status} ${JSON.stringify(r.body)}`);
  });
  afterAll(async () => {
    await kube.delete('/api/v1/namespaces/default/pods/wa-day2-daemonsets', 0);
    await deleteNamespace(kube, namespace);
    await removeNodePool(kube, preset);
  });

  it('a rollout of web, worker and PgBouncer at the HPA ceilings fits: every new pod is bound (issue: the surge pod stayed Pending)', async () => {
    await kube.applyAll(peak);
    const expected = peakPods(preset).reduce((n, p) => n + p.count, 0);
    await eventually(`${expected} pods bound and Ready`, async () => {
      await kubelet();
      const list = await podsOf(kube, namespace);
      return list.length >= expected && list.every((p) => p.nodeName);
    }, 120_000, 1_000);
    type Deployment = KubeObject & { spec: { replicas: number; template: unknown }; status: { updatedReplicas?: number; replicas?: number; readyReplicas?: number } };
    const rollout = async (what: string, next: ReturnType<typeof synthManifests>) => {
      await kube.applyAll(next);
      return eventually(`${what} rolled out`, async () => {
        await kubelet();
        const pending = (await podsOf(kube, namespace)).filter((p) => !p.nodeName && /Insufficient/.test(p.unschedulable ?? ''));
        if (pending.length) throw new Error(`rollout stalled, pod Pending: ${JSON.stringify(pending)}`);
        const list = await Promise.all(['web', 'worker', 'pgbouncer'].map((d) => kube.get<Deployment>(`/apis/apps/v1/namespaces/${namespace}/deployments/wa-router-${d}`)));
        return list.every((d) => d && d.status.updatedReplicas === d.spec.replicas && d.status.replicas === d.spec.replicas && d.status.readyReplicas === d.spec.replicas) ? list : false;
      }, 180_000, 1_000);
    };
    // First what only web and PgBouncer read, so both surge pods must fit beside everything else
    // (a worker rolling in place at the same moment would free room).
    const surge = await rollout('web and PgBouncer', synthManifests('standard', { namespace, atPeak: true, overrides: { web: { dbPoolMax: 12 }, pgbouncer: { serverIdleTimeout: 300 } } }));
    expect(surge.map((d) => `${d!.metadata.name}:${d!.status.updatedReplicas}`)).toEqual([`wa-router-web:${preset.web.maxReplicas}`, `wa-router-worker:${preset.worker.maxReplicas}`, `wa-router-pgbouncer:${preset.pgbouncer.replicas}`]);
    // Then a new image for web and worker, in one apply.
    const image = 'ghcr.io/wa-router/wa-router@sha256:' + '1'.repeat(64);
    const done = await rollout('the new image', synthManifests('standard', { namespace, atPeak: true, image, overrides: { web: { dbPoolMax: 12 }, pgbouncer: { serverIdleTimeout: 300 } } }));
    for (const d of done.slice(0, 2)) expect(JSON.stringify(d!.spec.template)).toContain(image);
  }, 300_000);

  it('draining the only node completes: no budget refuses an eviction (the documented procedure; issue: it hung on the Sentinel PDB)', async () => {
    const { refused } = await drain(node, 60_000);
    expect(refused).toEqual([]);
    expect((await pods()).filter((p) => p.spec.nodeName === node && !p.metadata.deletionTimestamp)).toEqual([]);
  }, 120_000);

  it('the control: the old Sentinel budget (minAvailable 2 of 3) refuses the second eviction for good', async () => {
    await kube.request('PATCH', `/api/v1/nodes/${node}`, { spec: { unschedulable: false } }, 'application/merge-patch+json');
    await eventually('Sentinels back and Ready', async () => {
      await kubelet();
      const list = (await pods()).filter((p) => p.metadata.name.startsWith('wa-router-sentinel-') && p.spec.nodeName && !p.metadata.deletionTimestamp);
      return list.length === 3 && list.every((p) => p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    }, 120_000, 1_000);
    await kube.apply({
      apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'old-sentinel', namespace },
      spec: { minAvailable: 2, selector: { matchLabels: { 'app.kubernetes.io/name': 'wa-router', 'app.kubernetes.io/component': 'sentinel' } } },
    } as unknown as KubeObject);
    await eventually('the budget observed', async () => ((await kube.get<KubeObject & { status?: { disruptionsAllowed?: number; observedGeneration?: number } }>(`/apis/policy/v1/namespaces/${namespace}/poddisruptionbudgets/old-sentinel`))?.status?.disruptionsAllowed ?? 0) === 1, 60_000, 500);
    const { refused } = await drain(node, 15_000);
    expect(refused.filter((n) => n.startsWith('wa-router-sentinel-')).length).toBeGreaterThanOrEqual(1);
  }, 240_000);
});
