// What the operator writes to a WhatsAppRouter's status, with its controller in this process (as
// the admin) on the real control plane: nothing for a reconcile that changes nothing, transition
// times that move only with their condition, readiness while paused, and a reason for every
// refusal or failure rather than a silent retry.
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { pino } from 'pino';
import { Kube, eventually, kubelet, type KubeObject } from '../src/kube.js';
import { deleteNamespace } from '../src/cluster.js';
import { KubeApi, type KubeResponse } from '../../cdk8s/src/operator/kube-api.js';
import { Controller, type ControllerOptions } from '../../cdk8s/src/operator/controller.js';
import { OperatorMetrics } from '../../cdk8s/src/operator/metrics.js';
import { installOperator } from '../src/operator.js';

const kube = new Kube(inject('kubeconfig'));
const API = '/apis/wa-router.dev/v1alpha1';
const IMAGE = 'registry.example/wa-router:status-test';
// No ServiceMonitors: every child kind is watched.
const OVERRIDES = { monitoring: { prometheusOperator: false } };

interface Condition { type: string; status: string; reason: string; message: string; observedGeneration?: number; lastTransitionTime?: string }
type Router = KubeObject & { status?: { observedGeneration?: number; conditions?: Condition[] } };
const condition = (r: { conditions?: Condition[] } | undefined, type: string) => r?.conditions?.find((c) => c.type === type);
const routerPath = (ns: string) => `${API}/namespaces/${ns}/whatsapprouters/router`;

/** The operator's real client, with every status patch it sends written down. */
class RecordingApi extends KubeApi {
  readonly statusPatches: { observedGeneration?: number; conditions?: Condition[] }[] = [];
  override async request<T = unknown>(method: string, path: string, body?: unknown, contentType?: string): Promise<KubeResponse<T>> {
    if (method === 'PATCH' && path.endsWith('/status')) this.statusPatches.push(structuredClone((body as { status: never }).status));
    return super.request<T>(method, path, body, contentType);
  }
}

/** A namespace with a controller of its own for the test's span. */
async function withController(ns: string, test: (api: RecordingApi) => Promise<void>, opts: ControllerOptions = {}, log = pino({ level: 'silent' })): Promise<void> {
  await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  const api = new RecordingApi(inject('kubeconfig'));
  const controller = new Controller(api, log, new OperatorMetrics(), { resyncMs: 300_000, progressingRequeueMs: 1_000, ...opts });
  await controller.start();
  try {
    await test(api);
  } finally {
    await controller.stop();
    await deleteNamespace(kube, ns);
  }
}

async function createRouter(ns: string, spec: Record<string, unknown>): Promise<Router> {
  const r = await kube.request<Router>('POST', `${API}/namespaces/${ns}/whatsapprouters`, { apiVersion: 'wa-router.dev/v1alpha1', kind: 'WhatsAppRouter', metadata: { name: 'router', namespace: ns }, spec });
  expect(r.status).toBe(201);
  return r.body;
}

async function untilReady(ns: string): Promise<Router> {
  return eventually('Ready', async () => {
    await kubelet(kube, ns);
    const r = await kube.get<Router>(routerPath(ns));
    return condition(r?.status, 'Ready')?.status === 'True' ? r : undefined;
  }, 120_000, 1_000);
}

/** The router once its status reports `generation` observed. */
async function untilObserved(ns: string, generation: number | undefined, what: string): Promise<Router> {
  return eventually(what, async () => {
    const r = await kube.get<Router>(routerPath(ns));
    return r?.status?.observedGeneration === generation ? r : undefined;
  }, 30_000, 250);
}

/** A minimal installation, Ready, then paused with `pending` (a spec change) waiting: the router once that generation is reported. */
async function readyThenPaused(ns: string, pending: Record<string, unknown>): Promise<Router> {
  await createRouter(ns, { preset: 'minimal', image: IMAGE, overrides: OVERRIDES });
  await untilReady(ns);
  const paused = await kube.request<Router>('PATCH', routerPath(ns), { spec: { paused: true, ...pending } }, 'application/merge-patch+json');
  expect(paused.status).toBe(200);
  return untilObserved(ns, paused.body.metadata.generation, 'the paused generation reported');
}

describe.runIf(inject('localControlPlane'))('the operator\'s status', () => {
  beforeAll(async () => {
    await installOperator(kube);
  });

  it('sends no status patch for a reconcile that changes nothing, moves a transition time only with its condition, and never reports Ready for a rollout not yet started', async () => {
    const ns = 'wa-status-noop';
    await withController(ns, async (api) => {
      await createRouter(ns, { preset: 'minimal', image: IMAGE, overrides: OVERRIDES });
      const settled = await untilReady(ns);
      // Settled: every child's last apply matches what the cache holds.
      await new Promise((r) => setTimeout(r, 6_000));
      // An annotation changes no generation and nothing in the status: nothing is written.
      api.statusPatches.length = 0;
      await kube.request('PATCH', routerPath(ns), { metadata: { annotations: { 'wa-router.test/nudge': String(Date.now()) } } }, 'application/merge-patch+json');
      await new Promise((r) => setTimeout(r, 3_000));
      expect(api.statusPatches).toEqual([]);
      // A web-only change: its new pod never becomes ready (no kubelet from here on).
      api.statusPatches.length = 0;
      const next = await kube.request<Router>('PATCH', routerPath(ns), { spec: { overrides: { ...OVERRIDES, web: { resources: { limits: { memory: '1600Mi' } } } } } }, 'application/merge-patch+json');
      expect(next.status).toBe(200);
      const gen = next.body.metadata.generation;
      const changed = await untilObserved(ns, gen, 'the new generation reported');
      await new Promise((r) => setTimeout(r, 5_000));
      const claims = api.statusPatches.filter((s) => s.observedGeneration === gen).map((s) => `${condition(s, 'Ready')?.status} ${condition(s, 'Ready')?.reason}`);
      expect(claims.length).toBeGreaterThan(0);
      expect(claims.filter((c) => c.startsWith('True'))).toEqual([]);
      // Ready turned False and its time moved; Degraded stayed False and kept its time.
      expect(condition(changed.status, 'Ready')?.status).toBe('False');
      expect(condition(changed.status, 'Ready')?.lastTransitionTime).not.toBe(condition(settled.status, 'Ready')?.lastTransitionTime);
      expect(condition(changed.status, 'Degraded')).toMatchObject({ status: 'False', lastTransitionTime: condition(settled.status, 'Degraded')?.lastTransitionTime });
    });
  }, 240_000);

  it('while paused with a change pending, judges readiness by what was last applied: a healthy installation stays Ready', async () => {
    const ns = 'wa-status-paused';
    await withController(ns, async () => {
      // Paused with a change waiting (it renames the migration Job): nothing in the cluster changes.
      const r = await readyThenPaused(ns, { secrets: { app: 'team-app-secret' } });
      expect(condition(r.status, 'Ready')).toMatchObject({ status: 'True', reason: 'Paused' });
    });
  }, 240_000);

  it('turns an apply the cluster forbids with 403 (an object-count quota) into Degraded with the server\'s reason', async () => {
    const ns = 'wa-status-quota';
    await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    // The rendering has more Deployments than the quota allows.
    expect((await kube.apply({ apiVersion: 'v1', kind: 'ResourceQuota', metadata: { name: 'deployments', namespace: ns }, spec: { hard: { 'count/deployments.apps': '1' } } })).status).toBeLessThan(300);
    await eventually('the quota counted', async () => (await kube.get<KubeObject & { status?: { hard?: Record<string, string> } }>(`/api/v1/namespaces/${ns}/resourcequotas/deployments`))?.status?.hard !== undefined, 60_000, 250);
    await withController(ns, async () => {
      await createRouter(ns, { preset: 'minimal', image: IMAGE });
      const r = await eventually('Degraded', async () => {
        const x = await kube.get<Router>(routerPath(ns));
        return condition(x?.status, 'Degraded')?.status === 'True' ? x : undefined;
      }, 30_000, 250);
      expect(condition(r.status, 'Degraded')).toMatchObject({ reason: 'ApplyFailed', message: expect.stringMatching(/exceeded quota/) });
      expect(condition(r.status, 'Ready')).toMatchObject({ status: 'False', reason: 'ApplyFailed' });
    });
  }, 240_000);

  it('reports a reconcile that fails otherwise (here the render throws a 50,000-character message) as Degraded, reason ReconcileError, its message cut to 4,096 characters', async () => {
    const ns = 'wa-status-error';
    await withController(ns, async () => {
      await createRouter(ns, { preset: 'minimal', image: IMAGE });
      const r = await eventually('Degraded', async () => {
        const x = await kube.get<Router>(routerPath(ns));
        return condition(x?.status, 'Degraded')?.status === 'True' ? x : undefined;
      }, 30_000, 250);
      const degraded = condition(r.status, 'Degraded')!;
      expect(degraded).toMatchObject({ reason: 'ReconcileError', message: expect.stringMatching(/^the reconcile failed and is retried: render failed: xxx/) });
      expect(degraded.message.length).toBeLessThanOrEqual(4_096);
      // The generation was not reconciled: it is not claimed as observed.
      expect(r.status?.observedGeneration).toBeUndefined();
    }, { render: () => Promise.reject(new Error(`render failed: ${'x'.repeat(50_000)}`)) });
  }, 120_000);

  it('a paused resource whose reconcile failed once and then succeeded no longer reports Degraded/ReconcileError', async () => {
    const ns = 'wa-status-paused-error';
    const { render } = await import('../../cdk8s/src/operator/render.js');
    let calls = 0;
    await withController(ns, async () => {
      const created = await createRouter(ns, { preset: 'minimal', image: IMAGE, overrides: OVERRIDES, paused: true });
      // The retry succeeded: the generation is reported as observed.
      const r = await untilObserved(ns, created.metadata.generation, 'the generation reconciled');
      await new Promise((res) => setTimeout(res, 3_000));
      const now = await kube.get<Router>(routerPath(ns));
      expect(calls).toBe(2);
      expect(condition(r.status, 'Progressing')).toMatchObject({ reason: 'Paused' });
      // The failure is over; the status must not keep saying it is retried.
      expect(condition(now?.status, 'Degraded')).toMatchObject({ status: 'False', reason: 'Paused' });
    }, { render: async (cr) => (++calls === 1 ? Promise.reject(new Error('render timed out once (a loaded host)')) : render(cr)) });
  }, 120_000);

  it('a healthy paused installation with a change pending stays Ready after the operator restarts (a leader failover)', async () => {
    const ns = 'wa-status-paused-failover';
    await withController(ns, async () => {
      await createRouter(ns, { preset: 'minimal', image: IMAGE, overrides: OVERRIDES });
      await untilReady(ns);
    });
    // The first process is gone (withController deleted the namespace): recreate, and let the
    // first controller apply, pause with a change pending, then hand over to a fresh process.
    await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    const first = new Controller(new KubeApi(inject('kubeconfig')), pino({ level: 'silent' }), new OperatorMetrics(), { resyncMs: 300_000, progressingRequeueMs: 1_000 });
    await first.start();
    let second: Controller | undefined;
    try {
      const before = await readyThenPaused(ns, { secrets: { app: 'team-app-secret' } });
      expect(condition(before.status, 'Ready')).toMatchObject({ status: 'True', reason: 'Paused' });
      await first.stop();
      // Nothing in the cluster changed; only the operator process did.
      second = new Controller(new KubeApi(inject('kubeconfig')), pino({ level: 'silent' }), new OperatorMetrics(), { resyncMs: 300_000, progressingRequeueMs: 1_000 });
      await second.start();
      await new Promise((r) => setTimeout(r, 8_000));
      const after = await kube.get<Router>(routerPath(ns));
      expect(condition(after?.status, 'Ready')).toMatchObject({ status: 'True', reason: 'Paused' });
    } finally {
      await first.stop().catch(() => {});
      await second?.stop();
      await deleteNamespace(kube, ns);
    }
  }, 240_000);

  it('paused with an invalid change pending, a healthy installation stays Ready and reports the invalid spec on Degraded', async () => {
    const ns = 'wa-status-paused-invalid';
    await withController(ns, async () => {
      const r = await readyThenPaused(ns, { overrides: { ...OVERRIDES, web: { replicaz: 2 } } });
      expect(condition(r.status, 'Ready')).toMatchObject({ status: 'True', reason: 'Paused' });
      expect(condition(r.status, 'Degraded')).toMatchObject({ status: 'True', reason: 'InvalidSpec', message: expect.stringContaining('replicaz') });
    });
  }, 240_000);
});
