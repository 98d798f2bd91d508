// The operator process's renders on the real control plane: a slow render (25 s, preloaded by the
// slow-render fixture for the namespace `wa-op-slow-render`) holds back no other resource, a render
// past its timeout fails that resource alone and its thread is replaced. (A render can no longer
// outlast the /healthz stall bound: the configuration refuses a timeout that would let it.)
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { Kube, eventually, type KubeObject } from '../src/kube.js';
import { deleteNamespace } from '../src/cluster.js';
import { installOperator, serviceAccountKubeconfig, startOperator, type OperatorProcess } from '../src/operator.js';

const kube = new Kube(inject('kubeconfig'));
const API = '/apis/wa-router.dev/v1alpha1';
const IMAGE = 'registry.example/wa-router:render-test';
const SLOW = 'wa-op-slow-render';
const slowRender = new URL('./fixtures/slow-render.mjs', import.meta.url).pathname;

interface Condition { type: string; status: string; reason: string; message: string }
type Router = KubeObject & { status?: { observedGeneration?: number; conditions?: Condition[] } };
const routerPath = (ns: string) => `${API}/namespaces/${ns}/whatsapprouters/router`;

async function createRouter(ns: string): Promise<void> {
  await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  const r = await kube.request('POST', `${API}/namespaces/${ns}/whatsapprouters`, { apiVersion: 'wa-router.dev/v1alpha1', kind: 'WhatsAppRouter', metadata: { name: 'router', namespace: ns }, spec: { preset: 'minimal', image: IMAGE } });
  expect(r.status).toBe(201);
}

const reconciled = async (ns: string) => (await kube.get<Router>(routerPath(ns)))?.status?.observedGeneration === 1;
const healthz = async (op: OperatorProcess) => (await fetch(`http://127.0.0.1:${op.port}/healthz`)).status;

describe.runIf(inject('localControlPlane'))('the operator\'s renders', () => {
  let op: OperatorProcess | undefined;
  const namespaces: string[] = [];
  beforeAll(async () => {
    await installOperator(kube);
  });
  afterEach(async () => {
    await op?.stop('SIGKILL');
    for (const ns of namespaces.splice(0)) await deleteNamespace(kube, ns);
  });

  async function start(name: string, env: Record<string, string>): Promise<OperatorProcess> {
    // A long lease: a loaded host's renewals meet it easily beside a 25 s busy render thread.
    const started = await startOperator(name, serviceAccountKubeconfig(inject('kubeconfig')), { NODE_OPTIONS: `--import=${slowRender}`, OPERATOR_LEASE_SECONDS: '60', OPERATOR_RENEW_DEADLINE_SECONDS: '40', ...env });
    op = started;
    await eventually(`${name} to lead`, async () => (await started.metrics()).get('wa_router_operator_leader') === 1, 90_000, 200);
    return started;
  }

  it('reconciles another resource while one resource\'s render takes 25 s, and stays alive meanwhile', async () => {
    const o = await start('operator-render-pool', {});
    namespaces.push(SLOW, 'wa-op-bystander');
    await createRouter(SLOW);
    await new Promise((r) => setTimeout(r, 1_000));
    const t = Date.now();
    await createRouter('wa-op-bystander');
    await eventually('the bystander reconciled', () => reconciled('wa-op-bystander'), 60_000, 200);
    const waited = Date.now() - t;
    console.log(`[operator] a resource waited ${waited} ms for its first status beside another resource's 25 s render`);
    expect(waited).toBeLessThan(10_000);
    // A render within its timeout is not a stuck process.
    expect(await healthz(o)).toBe(200);
    await eventually('the slow resource reconciled', () => reconciled(SLOW), 120_000, 500);
    expect(await healthz(o)).toBe(200);
  }, 300_000);

  it('stops a render past its timeout: that resource alone reports ReconcileError, and the single render thread is replaced for the next', async () => {
    await start('operator-render-timeout', { OPERATOR_RENDER_THREADS: '1', OPERATOR_RENDER_TIMEOUT_SECONDS: '5' });
    namespaces.push(SLOW, 'wa-op-after-timeout');
    await createRouter(SLOW);
    // Without the timeout this render would succeed after 25 s, and nothing would be reported.
    const r = await eventually('the timed-out render reported', async () => {
      const x = await kube.get<Router>(routerPath(SLOW));
      const degraded = x?.status?.conditions?.find((c) => c.type === 'Degraded');
      return degraded?.status === 'True' ? degraded : undefined;
    }, 60_000, 250);
    expect(r).toMatchObject({ reason: 'ReconcileError', message: expect.stringMatching(/took longer than 5000 ms and was stopped/) });
    // Gone, it is not retried: the one thread (replaced) is the next resource's.
    await kube.delete(routerPath(SLOW));
    const t = Date.now();
    await createRouter('wa-op-after-timeout');
    await eventually('the next resource reconciled', () => reconciled('wa-op-after-timeout'), 60_000, 200);
    console.log(`[operator] with one render thread, the next resource waited ${Date.now() - t} ms after another's render timed out`);
    const next = await kube.get<Router>(routerPath('wa-op-after-timeout'));
    expect(next?.status?.conditions?.find((c) => c.type === 'Degraded')?.reason).not.toBe('ReconcileError');
  }, 300_000);
});
