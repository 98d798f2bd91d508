// Review proof (expected to FAIL on the current code): ResilientInformer's periodic relist builds a
// new, empty informer and serves get()/list() from it before its list arrives, so the controller
// briefly sees every child as missing (Ready=False, a needless full re-apply, nothing to prune).
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Kube } from '../src/kube.js';
import { deleteNamespace } from '../src/cluster.js';
import { KubeApi } from '../../cdk8s/src/operator/kube-api.js';
import { ResilientInformer } from '../../cdk8s/src/operator/informer.js';
import { Controller } from '../../cdk8s/src/operator/controller.js';
import { OperatorMetrics } from '../../cdk8s/src/operator/metrics.js';
import { pino } from 'pino';
import { eventually, type KubeObject } from '../src/kube.js';
import { installOperator } from '../src/operator.js';

const kube = new Kube(inject('kubeconfig'));
const ns = 'wa-review-relist';

describe.runIf(inject('localControlPlane'))('ResilientInformer relist (review proof)', () => {
  beforeAll(async () => {
    await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    const r = await kube.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'present', namespace: ns, labels: { 'applyset.kubernetes.io/part-of': 'x' } }, data: { a: 'b' } });
    expect(r.status).toBeLessThan(300);
  });
  afterAll(async () => {
    await deleteNamespace(kube, ns);
  });

  it('never loses an existing object from its cache across a periodic relist', async () => {
    const api = new KubeApi(inject('kubeconfig'));
    const informer = new ResilientInformer(api, {
      path: '/api/v1/configmaps',
      labelSelector: 'applyset.kubernetes.io/part-of',
      relistMs: 1_000,
      onChange: () => {},
      onError: () => {},
    });
    await informer.start();
    expect(informer.hasSynced).toBe(true);
    expect(informer.get('present', ns)).toBeDefined();
    let checks = 0;
    let missing = 0;
    const until = Date.now() + 8_000;
    while (Date.now() < until) {
      checks++;
      // hasSynced stays true throughout: the controller has no way to tell the cache is empty.
      if (informer.hasSynced && informer.get('present', ns) === undefined) missing++;
      await new Promise((r) => setImmediate(r));
    }
    await informer.stop();
    console.log(`[review] relist: the existing ConfigMap was missing from a synced cache in ${missing} of ${checks} reads`);
    expect(missing).toBe(0);
  });

  it('keeps a Ready resource Ready across the periodic resync (no Ready=False flap while caches relist)', async () => {
    await installOperator(kube);
    const API = '/apis/wa-router.dev/v1alpha1';
    const routerPath = `${API}/namespaces/${ns}/whatsapprouters/router`;
    type Pod = KubeObject & { status?: { phase?: string; conditions?: { type: string; status: string }[] }; metadata: { deletionTimestamp?: string; labels?: Record<string, string> } };
    type Router = KubeObject & { status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } };
    const kubelet = async () => {
      for (const p of await kube.list<Pod>(`/api/v1/namespaces/${ns}/pods`)) {
        const path = `/api/v1/namespaces/${ns}/pods/${p.metadata.name}`;
        if (p.metadata.deletionTimestamp) { await kube.delete(path, 0); continue; }
        const now = new Date().toISOString();
        if (p.metadata.labels?.['app.kubernetes.io/component'] === 'migrate') {
          if (p.status?.phase !== 'Succeeded') await kube.request('PATCH', `${path}/status`, { status: { phase: 'Succeeded', conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: now }] } }, 'application/merge-patch+json');
        } else if (!p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) {
          const ready = ['Initialized', 'ContainersReady', 'Ready', 'PodScheduled'].map((type) => ({ type, status: 'True', lastTransitionTime: now }));
          await kube.request('PATCH', `${path}/status`, { status: { phase: 'Running', conditions: ready } }, 'application/merge-patch+json');
        }
      }
    };
    const created = await kube.request('POST', `${API}/namespaces/${ns}/whatsapprouters`, { apiVersion: 'wa-router.dev/v1alpha1', kind: 'WhatsAppRouter', metadata: { name: 'router', namespace: ns }, spec: { preset: 'minimal', image: 'registry.example/wa-router:review' } });
    expect(created.status).toBe(201);
    // The operator's controller in this process, as the admin, with a 12 s resync instead of 300 s.
    const controller = new Controller(new KubeApi(inject('kubeconfig')), pino({ level: 'silent' }), new OperatorMetrics(), { resyncMs: 12_000, progressingRequeueMs: 1_000 });
    await controller.start();
    try {
      await eventually('Ready', async () => {
        await kubelet();
        const r = await kube.get<Router>(routerPath);
        const ready = r?.status?.conditions?.find((c) => c.type === 'Ready');
        return ready?.status === 'True' ? true : (console.log(`[review] waiting: ${ready?.reason}: ${ready?.message}`), undefined);
      }, 170_000, 2_000);
      // Nothing changes from here on: every reconcile is a resync of a healthy installation.
      const seen: string[] = [];
      const until = Date.now() + 40_000;
      while (Date.now() < until) {
        const r = await kube.get<Router>(routerPath);
        const ready = r?.status?.conditions?.find((c) => c.type === 'Ready');
        if (ready && ready.status !== 'True') seen.push(`${ready.reason}: ${ready.message}`);
        await new Promise((res) => setTimeout(res, 100));
      }
      console.log(`[review] Ready=False reads during 40 s of resyncs: ${seen.length}; ${[...new Set(seen)].join(' | ')}`);
      expect([...new Set(seen)]).toEqual([]);
    } finally {
      await controller.stop();
    }
  });

  it('does not let a second WhatsAppRouter in the same namespace take over the first one\'s objects', async () => {
    await installOperator(kube);
    const two = 'wa-review-two';
    await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: two } });
    const API = '/apis/wa-router.dev/v1alpha1';
    const metrics = new OperatorMetrics();
    const controller = new Controller(new KubeApi(inject('kubeconfig')), pino({ level: 'silent' }), metrics, { resyncMs: 300_000, progressingRequeueMs: 5_000 });
    await controller.start();
    try {
      const first = await kube.request<KubeObject>('POST', `${API}/namespaces/${two}/whatsapprouters`, { apiVersion: 'wa-router.dev/v1alpha1', kind: 'WhatsAppRouter', metadata: { name: 'first', namespace: two }, spec: { preset: 'minimal', image: 'registry.example/wa-router:review' } });
      expect(first.status).toBe(201);
      const web = `/apis/apps/v1/namespaces/${two}/deployments/wa-router-web`;
      await eventually('first applied', async () => (await kube.get(web))?.metadata.ownerReferences?.[0]?.uid === first.body.metadata.uid, 60_000, 250);
      const second = await kube.request<KubeObject>('POST', `${API}/namespaces/${two}/whatsapprouters`, { apiVersion: 'wa-router.dev/v1alpha1', kind: 'WhatsAppRouter', metadata: { name: 'second', namespace: two }, spec: { preset: 'minimal', image: 'registry.example/wa-router:other' } });
      expect(second.status).toBe(201);
      const owners = new Set<string>();
      const reconcilesBefore = (await metrics.registry.getSingleMetric('wa_router_operator_reconciles_total')!.get()).values.reduce((a, v) => a + v.value, 0);
      const until = Date.now() + 15_000;
      while (Date.now() < until) {
        const d = await kube.get(web);
        owners.add(d?.metadata.ownerReferences?.map((r) => r.name).join(',') ?? 'none');
        await new Promise((res) => setTimeout(res, 200));
      }
      const reconciles = (await metrics.registry.getSingleMetric('wa_router_operator_reconciles_total')!.get()).values.reduce((a, v) => a + v.value, 0) - reconcilesBefore;
      console.log(`[review] two routers in one namespace: owners of wa-router-web seen ${[...owners].join(' | ')}; ${reconciles} reconciles in 15 s`);
      // The first resource's objects stay its own (the second is refused or reported, not applied over them).
      expect([...owners]).toEqual(['first']);
    } finally {
      await controller.stop();
      await deleteNamespace(kube, two);
    }
  });
});
