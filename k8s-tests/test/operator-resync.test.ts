// The operator's informers, controller and leader election in this process (as the admin) on the
// real control plane: a relist must never show the controller an empty cache (every child missing:
// Ready=False, a needless full re-apply), two resources in one namespace must not fight over
// objects, and a leader that may have lost its Lease writes nothing.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Kube } from '../src/kube.js';
import { deleteNamespace } from '../src/cluster.js';
import { KubeApi } from '../../cdk8s/src/operator/kube-api.js';
import { ResilientInformer } from '../../cdk8s/src/operator/informer.js';
import { Controller } from '../../cdk8s/src/operator/controller.js';
import { LeaderElector } from '../../cdk8s/src/operator/leader.js';
import { OperatorMetrics } from '../../cdk8s/src/operator/metrics.js';
import { pino } from 'pino';
import { eventually, type KubeObject } from '../src/kube.js';
import { installOperator } from '../src/operator.js';

const kube = new Kube(inject('kubeconfig'));
const ns = 'wa-resync';

describe.runIf(inject('localControlPlane'))('the operator across resyncs', () => {
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
    let missing = 0;
    const until = Date.now() + 8_000;
    while (Date.now() < until) {
      if (informer.hasSynced && informer.get('present', ns) === undefined) missing++;
      await new Promise((r) => setImmediate(r));
    }
    await informer.stop();
    expect(missing).toBe(0);
  });

  it('leaves the objects of a WhatsAppRouter to it when a second one in its namespace renders the same names: the second reports OwnedByAnotherRouter', async () => {
    await installOperator(kube);
    const two = 'wa-resync-two';
    await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: two } });
    const API = '/apis/wa-router.dev/v1alpha1';
    const controller = new Controller(new KubeApi(inject('kubeconfig')), pino({ level: 'silent' }), new OperatorMetrics(), { resyncMs: 300_000, progressingRequeueMs: 5_000 });
    await controller.start();
    try {
      const first = await kube.request<KubeObject>('POST', `${API}/namespaces/${two}/whatsapprouters`, { apiVersion: 'wa-router.dev/v1alpha1', kind: 'WhatsAppRouter', metadata: { name: 'first', namespace: two }, spec: { preset: 'minimal', image: 'registry.example/wa-router:resync' } });
      expect(first.status).toBe(201);
      const web = `/apis/apps/v1/namespaces/${two}/deployments/wa-router-web`;
      await eventually('first applied', async () => (await kube.get(web))?.metadata.ownerReferences?.[0]?.uid === first.body.metadata.uid, 60_000, 250);
      const second = await kube.request<KubeObject>('POST', `${API}/namespaces/${two}/whatsapprouters`, { apiVersion: 'wa-router.dev/v1alpha1', kind: 'WhatsAppRouter', metadata: { name: 'second', namespace: two }, spec: { preset: 'minimal', image: 'registry.example/wa-router:other' } });
      expect(second.status).toBe(201);
      const owners = new Set<string>();
      const until = Date.now() + 15_000;
      while (Date.now() < until) {
        const d = await kube.get(web);
        owners.add(d?.metadata.ownerReferences?.map((r) => r.name).join(',') ?? 'none');
        await new Promise((res) => setTimeout(res, 200));
      }
      expect([...owners]).toEqual(['first']);
      type Router = KubeObject & { status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } };
      const degraded = (await kube.get<Router>(`${API}/namespaces/${two}/whatsapprouters/second`))?.status?.conditions?.find((c) => c.type === 'Degraded');
      expect(degraded).toMatchObject({ status: 'True', reason: 'OwnedByAnotherRouter' });
      expect(degraded?.message).toContain(`Deployment/wa-router-web is controlled by WhatsAppRouter first (uid ${first.body.metadata.uid})`);
    } finally {
      await controller.stop();
      await deleteNamespace(kube, two);
    }
  });

  it('knows its Lease may be lost the moment it wakes from a pause longer than the renew deadline, before the election notices', async () => {
    const api = new KubeApi(inject('kubeconfig'));
    let stopped = 0;
    const elector = new LeaderElector(api, pino({ level: 'silent' }), {
      namespace: ns, name: 'fencing', identity: 'paused-leader',
      leaseDurationSeconds: 6, retryMs: 1_000, renewDeadlineMs: 3_000,
      onStartedLeading: () => {}, onStoppedLeading: () => stopped++,
    });
    elector.start();
    try {
      await eventually('the Lease', async () => elector.isLeader, 30_000, 100);
      expect(elector.holdsLease).toBe(true);
      // Paused, as by SIGSTOP: no timer runs and nothing renews, while the monotonic clock runs on.
      const until = performance.now() + 4_000;
      while (performance.now() < until);
      expect({ isLeader: elector.isLeader, holdsLease: elector.holdsLease, stopped }).toEqual({ isLeader: true, holdsLease: false, stopped: 0 });
    } finally {
      await elector.stop();
    }
  });

  it('writes nothing, neither objects nor status, while it may not hold the Lease', async () => {
    await installOperator(kube);
    const fenced = 'wa-resync-fenced';
    await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: fenced } });
    const API = '/apis/wa-router.dev/v1alpha1';
    let leader = false;
    const controller = new Controller(new KubeApi(inject('kubeconfig')), pino({ level: 'silent' }), new OperatorMetrics(), { resyncMs: 300_000, progressingRequeueMs: 1_000, mayWrite: () => leader });
    await controller.start();
    try {
      const created = await kube.request<KubeObject>('POST', `${API}/namespaces/${fenced}/whatsapprouters`, { apiVersion: 'wa-router.dev/v1alpha1', kind: 'WhatsAppRouter', metadata: { name: 'router', namespace: fenced }, spec: { preset: 'minimal', image: 'registry.example/wa-router:resync' } });
      expect(created.status).toBe(201);
      // Long enough for a reconcile and its retries.
      await new Promise((r) => setTimeout(r, 5_000));
      const router = await kube.get<KubeObject & { status?: unknown }>(`${API}/namespaces/${fenced}/whatsapprouters/router`);
      expect({ status: router?.status, parent: router?.metadata.labels, deployments: await kube.list(`/apis/apps/v1/namespaces/${fenced}/deployments`), configMaps: (await kube.list<KubeObject>(`/api/v1/namespaces/${fenced}/configmaps`)).map((c) => c.metadata.name) })
        .toEqual({ status: undefined, parent: undefined, deployments: [], configMaps: ['kube-root-ca.crt'] });
      // The same controller writes once the Lease is surely its own again.
      leader = true;
      await eventually('the web Deployment', async () => (await kube.get(`/apis/apps/v1/namespaces/${fenced}/deployments/wa-router-web`)) !== undefined, 60_000, 250);
    } finally {
      await controller.stop();
      await deleteNamespace(kube, fenced);
    }
  });
});
