// The operator on the real control plane: the process runs as its ServiceAccount (RBAC as the
// manifests grant it), the controller-manager's garbage collector and workload controllers are
// the real ones. No kubelet runs, so the test marks pods Ready (or a Job's pod Succeeded) itself.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import {
  APPLYSET_ID_LABEL, applySetId, applySetIdOf, GROUP_KINDS_ANNOTATION, groupKind, groupKindsValue, OPERATOR_FIELD_MANAGER, OPERATOR_TOOLING,
  PART_OF_LABEL, synthManifests, TOOLING_ANNOTATION, type Manifest,
} from '@wa-router/cdk8s';
import { deleteNamespace } from '../src/cluster.js';
import { eventually, Kube, kubelet, type KubeObject, type Pod } from '../src/kube.js';
import { installOperator, rssMiB, serviceAccountKubeconfig, startOperator, TEST_LEASE_SECONDS, type OperatorProcess } from '../src/operator.js';

const kube = new Kube(inject('kubeconfig'));
const IMAGE = 'registry.example/wa-router:operator-test';
const API = '/apis/wa-router.dev/v1alpha1';

interface Condition { type: string; status: string; reason: string; message: string; observedGeneration?: number }
type Router = KubeObject & { spec: Record<string, unknown>; status?: { observedGeneration?: number; image?: string; conditions?: Condition[]; appliedObjects?: number; components?: Record<string, { ready: number; desired: number }> } };

const routerPath = (ns: string, name = 'router') => `${API}/namespaces/${ns}/whatsapprouters/${name}`;
const getRouter = (ns: string) => kube.get<Router>(routerPath(ns));
const exec = promisify(execFile);

/** kubectl of the control plane's build, as the admin, with the ApplySet feature on. */
async function kubectl(...args: string[]): Promise<{ code: number; out: string }> {
  const bin = path.join(inject('binDir'), 'kubectl');
  return exec(bin, ['--kubeconfig', inject('kubeconfig'), ...args], { env: { ...process.env, KUBECTL_APPLYSET: 'true' } })
    .then((r) => ({ code: 0, out: r.stdout + r.stderr }))
    .catch((e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }));
}

/** What the resource carries as an ApplySet parent. */
const parentOf = (r: Router) => ({
  id: r.metadata.labels?.[APPLYSET_ID_LABEL],
  tooling: r.metadata.annotations?.[TOOLING_ANNOTATION],
  kinds: r.metadata.annotations?.[GROUP_KINDS_ANNOTATION],
});
const condition = (r: Router | undefined, type: string) => r?.status?.conditions?.find((c) => c.type === type);

async function createNamespace(ns: string): Promise<void> {
  const r = await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  if (r.status >= 300) throw new Error(`namespace ${ns}: ${r.status}`);
}

async function createRouter(ns: string, spec: Record<string, unknown>): Promise<Router> {
  const r = await kube.request<Router>('POST', `${API}/namespaces/${ns}/whatsapprouters?fieldValidation=Strict`, { apiVersion: 'wa-router.dev/v1alpha1', kind: 'WhatsAppRouter', metadata: { name: 'router', namespace: ns }, spec });
  if (r.status !== 201) throw new Error(`create router in ${ns}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

async function patchSpec(ns: string, spec: Record<string, unknown>): Promise<Router> {
  const r = await kube.request<Router>('PATCH', `${routerPath(ns)}?fieldValidation=Strict`, { spec }, 'application/merge-patch+json');
  if (r.status !== 200) throw new Error(`patch router in ${ns}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Waits until the status speaks of the current generation. */
async function reconciled(ns: string, timeoutMs = 60_000): Promise<Router> {
  return eventually(`router in ${ns} reconciled`, async () => {
    const r = await getRouter(ns);
    return r && r.status?.observedGeneration === r.metadata.generation && condition(r, 'Ready') ? r : undefined;
  }, timeoutMs, 250);
}

const objectPath = (m: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } }) => kube.objectPath(m);

/** Every field the rendering sets is on the live object with the same value (the server adds defaults). */
function differences(want: unknown, live: unknown, at = ''): string[] {
  if (Array.isArray(want)) {
    if (!Array.isArray(live) || live.length !== want.length) return [`${at}: ${JSON.stringify(live)} ≠ ${JSON.stringify(want)}`];
    return want.flatMap((w, i) => differences(w, live[i], `${at}[${i}]`));
  }
  if (typeof want === 'object' && want !== null) {
    if (typeof live !== 'object' || live === null) return [`${at}: missing`];
    return Object.entries(want).flatMap(([k, w]) => differences(w, (live as Record<string, unknown>)[k], `${at}.${k}`));
  }
  if (String(want) === String(live)) return [];
  // The server writes a quantity in its canonical form ("2048Mi" is stored as "2Gi").
  const q = quantity(want);
  return q !== undefined && q === quantity(live) ? [] : [`${at}: ${JSON.stringify(live)} ≠ ${JSON.stringify(want)}`];
}

const UNITS: Record<string, number> = { '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
function quantity(v: unknown): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(m|k|M|G|Ki|Mi|Gi|Ti)?$/.exec(String(v));
  return m ? Number(m[1]) * UNITS[m[2] ?? '']! : undefined;
}

/** One reconcile of the premium resource with nothing to do: its time and the API requests it sends. */
async function measureNoOpResync(op: OperatorProcess, reapplyMs: number): Promise<void> {
  const ns = 'wa-op-premium';
  // Ready first, and alone: a resource still progressing is re-read every few seconds.
  await eventually('premium to be Ready', async () => {
    await kubelet(kube, ns);
    return condition(await getRouter(ns), 'Ready')?.status === 'True';
  }, 120_000, 1_000);
  await new Promise((r) => setTimeout(r, 3_000));
  const before = await op.metrics();
  const reconciles = (m: Map<string, number>) => [...m].filter(([k]) => k.startsWith('wa_router_operator_reconciles_total')).reduce((a, [, v]) => a + v, 0);
  const requests = (m: Map<string, number>) => [...m].filter(([k]) => k.startsWith('wa_router_operator_api_requests_total')).reduce((a, [, v]) => a + v, 0);
  // An annotation changes no generation: the reconcile it triggers has nothing to do.
  await kube.request('PATCH', routerPath(ns), { metadata: { annotations: { 'wa-router.test/nudge': String(Date.now()) } } }, 'application/merge-patch+json');
  const after = await eventually('a resync', async () => {
    const m = await op.metrics();
    return reconciles(m) > reconciles(before) ? m : undefined;
  }, 30_000, 100);
  const seconds = (after.get('wa_router_operator_reconcile_duration_seconds_sum') ?? 0) - (before.get('wa_router_operator_reconcile_duration_seconds_sum') ?? 0);
  const sent = requests(after) - requests(before);
  console.log(`[operator] no-op resync of premium: ${(seconds * 1000).toFixed(1)} ms, ${sent} API requests (lease renewals included); baseline: an unchanged apply pass ${reapplyMs} ms (ratio ${((seconds * 1000) / reapplyMs).toFixed(2)}); operator RSS ${rssMiB(op.child.pid!).toFixed(0)} MiB`);
  expect(sent).toBeLessThan(15);
}

describe.runIf(inject('localControlPlane'))('the WhatsAppRouter operator', () => {
  const operators: OperatorProcess[] = [];
  let saKubeconfig: string;
  const namespaces = ['wa-op-minimal', 'wa-op-standard', 'wa-op-premium', 'wa-op-invalid', 'wa-op-baseline'];

  beforeAll(async () => {
    await installOperator(kube);
    saKubeconfig = serviceAccountKubeconfig(inject('kubeconfig'));
    operators.push(await startOperator('operator-a', saKubeconfig));
    for (const ns of namespaces) await createNamespace(ns);
  });

  afterAll(async () => {
    for (const o of operators) await o.stop('SIGKILL');
    for (const ns of namespaces) await deleteNamespace(kube, ns);
  });

  it('renders every preset: each object of `make synth` exists, owned by the resource, applied by the operator, identical in spec', async () => {
    // Same-run baseline: one server-side apply pass of the same objects by a plain client (what
    // `make deploy` sends, without kubectl's start-up), into a namespace of its own, then a second pass.
    const baseline = synthManifests('premium', { namespace: 'wa-op-baseline', image: IMAGE }).filter((m) => m.kind !== 'Namespace');
    let t = Date.now();
    await kube.applyAll(baseline);
    const applyMs = Date.now() - t;
    t = Date.now();
    await kube.applyAll(baseline);
    const reapplyMs = Date.now() - t;
    const op = operators[0]!;
    const durationBefore = (await op.metrics()).get('wa_router_operator_reconcile_duration_seconds_sum') ?? 0;
    t = Date.now();
    const created = await createRouter('wa-op-premium', { preset: 'premium', image: IMAGE });
    const premium = await eventually('premium reconciled', async () => {
      const r = await getRouter('wa-op-premium');
      return r?.status?.observedGeneration === created.metadata.generation ? r : undefined;
    }, 60_000, 50);
    const freshMs = Date.now() - t;
    const firstReconcileMs = ((await op.metrics()).get('wa_router_operator_reconcile_duration_seconds_sum')! - durationBefore) * 1000;
    console.log(`[operator] fresh premium resource: status written ${freshMs} ms after its creation (reconcile ${firstReconcileMs.toFixed(0)} ms); baseline: one apply pass of the same ${baseline.length} objects ${applyMs} ms (ratio ${(freshMs / applyMs).toFixed(2)}); operator RSS ${rssMiB(op.child.pid!).toFixed(0)} MiB`);
    await measureNoOpResync(op, reapplyMs);
    for (const preset of ['minimal', 'standard']) await createRouter(`wa-op-${preset}`, { preset, image: IMAGE });
    for (const preset of ['minimal', 'standard', 'premium']) {
      const ns = `wa-op-${preset}`;
      const router = await reconciled(ns);
      const expected = synthManifests(preset, { namespace: ns, image: IMAGE }).filter((m) => m.kind !== 'Namespace');
      expect(router.status?.appliedObjects).toBe(expected.length);
      expect(parentOf(router)).toEqual({ id: applySetId(router as never), tooling: OPERATOR_TOOLING, kinds: groupKindsValue(expected.map(groupKind)) });
      const problems: string[] = [];
      for (const m of expected) {
        const live = await kube.get<KubeObject & { metadata: { ownerReferences?: { uid: string; controller?: boolean }[] } } & Record<string, unknown>>(await objectPath(m));
        if (!live) {
          problems.push(`${m.kind}/${m.metadata.name} missing`);
          continue;
        }
        const owner = live.metadata.ownerReferences?.find((r) => r.uid === router.metadata.uid);
        if (!owner?.controller) problems.push(`${m.kind}/${m.metadata.name} not owned by the router`);
        if (!live.metadata.managedFields?.some((f) => f.manager === OPERATOR_FIELD_MANAGER && f.operation === 'Apply')) problems.push(`${m.kind}/${m.metadata.name} not applied by ${OPERATOR_FIELD_MANAGER}`);
        if (live.metadata.labels?.[PART_OF_LABEL] !== applySetId(router as never)) problems.push(`${m.kind}/${m.metadata.name} lacks the ApplySet label`);
        for (const field of ['spec', 'data', 'rules']) {
          if (m[field] !== undefined) problems.push(...differences(m[field], live[field], `${m.kind}/${m.metadata.name}.${field}`));
        }
      }
      expect(problems).toEqual([]);
    }
    expect(premium.status?.appliedObjects).toBe(baseline.length);
  });

  it('is an ApplySet parent as kubectl writes one: same id scheme and annotation format, and kubectl sees who manages it', async () => {
    // kubectl's own parent (a ConfigMap) for a ConfigMap and a Deployment: the format to match.
    const ns = 'wa-op-invalid';
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'wa-applyset-')), 'set.yaml');
    const labels = { app: 'applyset-reference' };
    fs.writeFileSync(file, YAML.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'applyset-member', namespace: ns }, data: { a: 'b' } }) + '---\n' + YAML.stringify({
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'applyset-member', namespace: ns },
      spec: { replicas: 0, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'c', image: IMAGE }] } } },
    }));
    const made = await kubectl('apply', '--server-side', '--prune', '--applyset=configmaps/kubectl-parent', '-n', ns, '-f', file);
    expect(made.code, made.out).toBe(0);
    const reference = await kube.get(`/api/v1/namespaces/${ns}/configmaps/kubectl-parent`);
    expect(reference?.metadata.labels?.[APPLYSET_ID_LABEL]).toBe(applySetIdOf({ name: 'kubectl-parent', namespace: ns, kind: 'ConfigMap', group: '' }));
    expect(reference?.metadata.annotations?.[GROUP_KINDS_ANNOTATION]).toBe(groupKindsValue(['Deployment.apps', 'ConfigMap']));
    expect(reference?.metadata.annotations?.[TOOLING_ANNOTATION]).toMatch(/^kubectl\/v\d/);
    const member = await kube.get(`/apis/apps/v1/namespaces/${ns}/deployments/applyset-member`);
    expect(member?.metadata.labels?.[PART_OF_LABEL]).toBe(reference?.metadata.labels?.[APPLYSET_ID_LABEL]);
    for (const m of ['/apis/apps/v1/namespaces/{ns}/deployments/applyset-member', '/api/v1/namespaces/{ns}/configmaps/applyset-member', '/api/v1/namespaces/{ns}/configmaps/kubectl-parent']) await kube.delete(m.replace('{ns}', ns));

    // The resource as a parent: kubectl takes its kind as a parent type, checks the set, and
    // refuses to change a set another tool manages (rather than prune the operator's objects).
    const router = await reconciled('wa-op-standard');
    expect(parentOf(router).id).toBe(applySetId(router as never));
    const refused = await kubectl('apply', '--server-side', '--prune', '--dry-run=server', '--applyset=whatsapprouters.wa-router.dev/router', '-n', 'wa-op-standard', '-f', file);
    expect(refused.code).not.toBe(0);
    expect(refused.out).toMatch(/managed by tooling "wa-router-operator" instead of "kubectl"/);
  });

  it('reports Progressing until the children are ready, then Ready=True at the current generation', async () => {
    const ns = 'wa-op-minimal';
    const before = await reconciled(ns);
    expect(condition(before, 'Ready')?.status).toBe('False');
    expect(condition(before, 'Progressing')).toMatchObject({ status: 'True', reason: 'ComponentsNotReady' });
    const ready = await eventually('minimal to be Ready', async () => {
      await kubelet(kube, ns);
      const r = await getRouter(ns);
      return condition(r, 'Ready')?.status === 'True' ? r : undefined;
    }, 120_000, 1_000);
    expect(ready.status?.observedGeneration).toBe(ready.metadata.generation);
    expect(condition(ready, 'Progressing')?.status).toBe('False');
    expect(condition(ready, 'Degraded')?.status).toBe('False');
    expect(ready.status?.components?.['web']).toEqual({ ready: 1, desired: 1 });
    // `kubectl get whatsapprouters`: the printer columns answer "is it healthy?" in one line.
    const table = await kube.request<{ columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] }>('GET', `${API}/namespaces/${ns}/whatsapprouters`, undefined, undefined, 'application/json;as=Table;v=v1;g=meta.k8s.io');
    expect(table.status).toBe(200);
    expect(table.body.columnDefinitions.map((c) => c.name)).toEqual(['Name', 'Preset', 'Ready', 'Web', 'Worker', 'Reason', 'Age']);
    expect(table.body.rows[0]!.cells.slice(0, 5)).toEqual(['router', 'minimal', 'True', '1/1', '1/1']);
  });

  it('keeps Ready=False while a rollout\'s new pod is not ready, though the old one still is', async () => {
    const ns = 'wa-op-minimal';
    // A web-only change: a new ReplicaSet whose one surge pod no kubelet makes ready.
    const next = await patchSpec(ns, { overrides: { web: { resources: { limits: { memory: '1600Mi' } } } } });
    await eventually('the surge pod', async () => (await kube.list<Pod>(`/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent('app.kubernetes.io/component=web')}`)).length === 2, 30_000, 250);
    await new Promise((r) => setTimeout(r, 3_000));
    const stuck = await reconciled(ns);
    expect(stuck.status?.observedGeneration).toBe(next.metadata.generation);
    expect(condition(stuck, 'Ready')?.status).toBe('False');
    expect(stuck.status?.components?.['web']).toEqual({ ready: 0, desired: 1 });
    await eventually('Ready again once the new pod is', async () => {
      await kubelet(kube, ns);
      return condition(await getRouter(ns), 'Ready')?.status === 'True';
    }, 120_000, 1_000);
  });

  it('renames the migration Job when spec.secrets changes, and stays healthy (a Job\'s template is immutable)', async () => {
    const ns = 'wa-op-minimal';
    const jobs = async () => (await kube.list<KubeObject>(`/apis/batch/v1/namespaces/${ns}/jobs`)).map((j) => j.metadata.name);
    const before = await jobs();
    const next = await patchSpec(ns, { secrets: { app: 'team-app-secret' } });
    const after = await eventually('the change applied', async () => {
      const r = await getRouter(ns);
      return r?.status?.observedGeneration === next.metadata.generation ? r : undefined;
    }, 60_000, 250);
    expect(condition(after, 'Degraded')).toMatchObject({ status: 'False', reason: 'Applied' });
    expect((await jobs()).filter((j) => !before.includes(j))).toHaveLength(1);
    const back = await patchSpec(ns, { secrets: null });
    await eventually('healthy again', async () => {
      await kubelet(kube, ns);
      const r = await getRouter(ns);
      return r?.status?.observedGeneration === back.metadata.generation && condition(r, 'Degraded')?.status === 'False';
    }, 60_000, 250);
  });

  it('follows a changed override and preset, prunes what the rendering lost, and leaves look-alikes alone', async () => {
    const ns = 'wa-op-standard';
    const router = await reconciled(ns);
    const id = applySetId(router as never);
    // Look-alikes: our ApplySet label without our owner reference, and our labels on an unrelated object.
    const lookAlikes: Manifest[] = [
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'wa-router-postgres-lookalike', namespace: ns, labels: { [PART_OF_LABEL]: id, 'app.kubernetes.io/part-of': 'wa-router' } }, data: { a: 'b' } },
      { apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', metadata: { name: 'someone-elses', namespace: ns, labels: { 'app.kubernetes.io/part-of': 'wa-router', 'app.kubernetes.io/component': 'web' } }, spec: { selector: {}, endpoints: [{ port: 'http' }] } },
    ];
    for (const m of lookAlikes) expect((await kube.apply(m)).status).toBeLessThan(300);

    const external = { host: 'db.example.internal', port: 5432, database: 'wa_router' };
    const next = await patchSpec(ns, { overrides: { worker: { concurrency: 7 }, postgres: { mode: 'external', external }, monitoring: { prometheusOperator: false } } });
    await eventually('the new rendering to be applied', async () => {
      const r = await getRouter(ns);
      return r?.status?.observedGeneration === next.metadata.generation;
    }, 60_000, 250);
    const worker = await kube.get<KubeObject & { spec: { template: { spec: { containers: { env: { name: string; value?: string }[] }[] } } } }>(`/apis/apps/v1/namespaces/${ns}/deployments/wa-router-worker`);
    expect(worker?.spec.template.spec.containers[0]!.env.find((e) => e.name === 'WORKER_CONCURRENCY')?.value).toBe('7');
    // Pruned: the in-cluster Postgres (a watched kind) and the ServiceMonitors (a listed kind).
    await eventually('the Postgres StatefulSet and the ServiceMonitors to be pruned', async () => {
      const sts = await kube.get(`/apis/apps/v1/namespaces/${ns}/statefulsets/wa-router-postgres`);
      const monitors = await kube.list<KubeObject>(`/apis/monitoring.coreos.com/v1/namespaces/${ns}/servicemonitors`);
      return sts === undefined && monitors.every((m) => m.metadata.name === 'someone-elses');
    }, 60_000, 500);
    // The status and the parent speak only of what the rendering has now.
    expect(router.status?.components).toHaveProperty('postgres');
    const after = await reconciled(ns);
    expect(after.status?.components).not.toHaveProperty('postgres');
    expect(Object.keys(after.status?.components ?? {}).length).toBeGreaterThan(0);
    const rendered = synthManifests('standard', { namespace: ns, image: IMAGE, overrides: { worker: { concurrency: 7 }, postgres: { mode: 'external', external }, monitoring: { prometheusOperator: false } } }).filter((m) => m.kind !== 'Namespace');
    expect(parentOf(after).kinds).toBe(groupKindsValue(rendered.map(groupKind)));
    expect(parentOf(after).kinds).not.toMatch(/ServiceMonitor|PrometheusRule/);
    expect(await kube.get(`/api/v1/namespaces/${ns}/configmaps/wa-router-postgres-lookalike`)).toBeDefined();
    expect(await kube.get(`/apis/monitoring.coreos.com/v1/namespaces/${ns}/servicemonitors/someone-elses`)).toBeDefined();

    // Another preset: its numbers reach the objects.
    const bigger = await patchSpec(ns, { preset: 'premium', overrides: { postgres: { mode: 'external', external }, monitoring: { prometheusOperator: false } } });
    await eventually('premium sizes on the web Deployment', async () => {
      const web = await kube.get<KubeObject & { spec: { template: { spec: { containers: { resources: { limits: { memory: string } } }[] } } } }>(`/apis/apps/v1/namespaces/${ns}/deployments/wa-router-web`);
      const want = synthManifests('premium', { namespace: ns, image: IMAGE }).find((m) => m.kind === 'Deployment' && m.metadata.name === 'wa-router-web') as unknown as typeof web;
      const r = await getRouter(ns);
      return r?.status?.observedGeneration === bigger.metadata.generation && differences(want!.spec.template.spec.containers[0]!.resources, web!.spec.template.spec.containers[0]!.resources).length === 0;
    }, 60_000, 500);
  });

  it('recreates a deleted Deployment and takes back a field another manager changed', async () => {
    const ns = 'wa-op-minimal';
    const path = `/apis/apps/v1/namespaces/${ns}/deployments/wa-router-web`;
    const before = await kube.get(path);
    await kube.delete(path);
    const again = await eventually('the web Deployment to be recreated', async () => {
      const d = await kube.get(path);
      return d && d.metadata.uid !== before?.metadata.uid ? d : undefined;
    }, 30_000, 250);
    expect(again.metadata.labels?.[PART_OF_LABEL]).toBeDefined();
    type Dep = KubeObject & { spec: { template: { spec: { containers: { name: string; image: string }[] } } } };
    // What `kubectl edit` sends: an update by another field manager.
    const edited = await kube.request<Dep>('PATCH', `${path}?fieldManager=kubectl-edit`, { spec: { template: { spec: { containers: [{ name: 'web', image: 'evil.example/wa-router:edited' }] } } } }, 'application/strategic-merge-patch+json');
    expect(edited.status).toBe(200);
    await eventually('the image to be corrected', async () => (await kube.get<Dep>(path))?.spec.template.spec.containers[0]!.image === IMAGE, 30_000, 250);
  });

  it('turns a change Kubernetes forbids into Degraded with the reason, and keeps running', async () => {
    const ns = 'wa-op-minimal';
    const next = await patchSpec(ns, { overrides: { redis: { storage: '3Gi' } } });
    const degraded = await eventually('Degraded', async () => {
      const r = await getRouter(ns);
      return r?.status?.observedGeneration === next.metadata.generation && condition(r, 'Degraded')?.status === 'True' ? r : undefined;
    }, 60_000, 250);
    expect(condition(degraded, 'Degraded')).toMatchObject({ reason: 'ApplyFailed' });
    expect(condition(degraded, 'Degraded')?.message).toMatch(/^StatefulSet\/wa-router-redis: Invalid: 422 spec\.volumeClaimTemplates: field is immutable$/);
    expect(operators[0]!.child.exitCode).toBeNull();
    const back = await patchSpec(ns, { overrides: null });
    await eventually('healthy again', async () => {
      const r = await getRouter(ns);
      return r?.status?.observedGeneration === back.metadata.generation && condition(r, 'Degraded')?.status === 'False';
    }, 60_000, 250);
  });

  it('refuses invalid specs at admission where the schema can tell, and otherwise reports InvalidSpec naming the field without touching anything', async () => {
    const ns = 'wa-op-invalid';
    const post = (spec: Record<string, unknown>) => kube.request<{ message: string }>('POST', `${API}/namespaces/${ns}/whatsapprouters?fieldValidation=Strict`, { apiVersion: 'wa-router.dev/v1alpha1', kind: 'WhatsAppRouter', metadata: { name: 'refused', namespace: ns }, spec });
    const unknownPreset = await post({ preset: 'huge' });
    expect(unknownPreset.status).toBe(422);
    expect(unknownPreset.body.message).toMatch(/spec\.preset/);
    const cel = await post({ preset: 'minimal', overrides: { web: { replicas: 5, maxReplicas: 2 } } });
    expect(cel.status).toBe(422);
    expect(cel.body.message).toMatch(/spec\.overrides\.web\.replicas: Invalid value.*maxReplicas/);
    const quantity = await post({ preset: 'minimal', overrides: { web: { resources: { requests: { cpu: 0.5 } } } } });
    expect(quantity.status).toBe(422);

    // A valid installation turned invalid: nothing of it is touched, though the change would prune.
    await createRouter(ns, { preset: 'minimal', image: IMAGE });
    await reconciled(ns);
    const children = async () => [
      ...(await kube.list<KubeObject>(`/apis/apps/v1/namespaces/${ns}/deployments`)),
      ...(await kube.list<KubeObject>(`/apis/apps/v1/namespaces/${ns}/statefulsets`)),
      ...(await kube.list<KubeObject>(`/api/v1/namespaces/${ns}/configmaps`)),
    ].map((o) => `${o.metadata.name}@${o.metadata.uid}@${o.metadata.generation ?? o.metadata.resourceVersion}`).sort();
    const installed = await children();
    expect(installed.some((c) => c.startsWith('wa-router-postgres@'))).toBe(true);
    // Consistent in shape, not in sums (only the preset's checks can tell), with a change that would prune.
    const external = { host: 'db.example.internal', port: 5432, database: 'wa_router' };
    const turned = await patchSpec(ns, { overrides: { pgbouncer: { maxClientConn: 10 }, postgres: { mode: 'external', external } } });
    const invalid = await eventually('InvalidSpec', async () => {
      const r = await getRouter(ns);
      return r?.status?.observedGeneration === turned.metadata.generation && condition(r, 'Ready')?.reason === 'InvalidSpec' ? r : undefined;
    }, 30_000, 250);
    expect(condition(invalid, 'Ready')?.status).toBe('False');
    expect(condition(invalid, 'Ready')?.message).toMatch(/spec\.overrides\.pgbouncer\.maxClientConn: /);
    // A misspelled field, sent as client-go or Terraform send it (no fieldValidation): kept for the
    // preset's checks, not pruned without a word.
    const misspelled = await kube.request<Router>('PATCH', routerPath(ns), { spec: { overrides: { pgbouncer: null, web: { replicaz: 2 } } } }, 'application/merge-patch+json');
    expect(misspelled.status).toBe(200);
    expect((misspelled.body.spec['overrides'] as { web: Record<string, unknown> }).web).toEqual({ replicaz: 2 });
    const named = await eventually('InvalidSpec naming the misspelled field', async () => {
      const r = await getRouter(ns);
      return r?.status?.observedGeneration === misspelled.body.metadata.generation && condition(r, 'Ready')?.reason === 'InvalidSpec' ? r : undefined;
    }, 30_000, 250);
    expect(condition(named, 'Ready')?.message).toBe('spec.overrides.web.replicaz: unknown field');
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await children()).toEqual(installed);
  });

  it('applies and prunes nothing while paused', async () => {
    const ns = 'wa-op-minimal';
    const path = `/apis/apps/v1/namespaces/${ns}/deployments/wa-router-worker`;
    const postgres = `/apis/apps/v1/namespaces/${ns}/statefulsets/wa-router-postgres`;
    expect(await kube.get(postgres)).toBeDefined();
    // Two changes: one to apply, one that prunes the in-cluster Postgres.
    const external = { host: 'db.example.internal', port: 5432, database: 'wa_router' };
    const pausedImage = `${IMAGE}-paused`;
    const paused = await patchSpec(ns, { paused: true, image: pausedImage, overrides: { worker: { concurrency: 9 }, postgres: { mode: 'external', external } } });
    const whilePaused = await eventually('Paused', async () => {
      const r = await getRouter(ns);
      return r?.status?.observedGeneration === paused.metadata.generation && condition(r, 'Progressing')?.reason === 'Paused' ? r : undefined;
    }, 30_000, 250);
    // The status names what runs, not the spec waiting to be applied.
    expect(whilePaused.status?.image).toBe(IMAGE);
    await kube.delete(path);
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await kube.get(path)).toBeUndefined();
    // Only the rendering from before the pause has the Postgres ConfigMap: it stays while paused.
    const postgresConfig = `/api/v1/namespaces/${ns}/configmaps/wa-router-postgres`;
    expect(await kube.get(postgresConfig)).toBeDefined();
    expect(await kube.get(postgres)).toBeDefined();
    await patchSpec(ns, { paused: false });
    type Dep = KubeObject & { spec: { template: { spec: { containers: { env: { name: string; value?: string }[] }[] } } } };
    await eventually('the worker back with the change made while paused', async () => (await kube.get<Dep>(path))?.spec.template.spec.containers[0]!.env.find((e) => e.name === 'WORKER_CONCURRENCY')?.value === '9', 30_000, 250);
    await eventually('the Postgres StatefulSet pruned once unpaused', async () => (await kube.get(postgres)) === undefined, 30_000, 250);
    await eventually('the Postgres ConfigMap pruned once unpaused', async () => (await kube.get(postgresConfig)) === undefined, 30_000, 250);
    await eventually('the status to name the image applied since', async () => (await getRouter(ns))?.status?.image === pausedImage, 30_000, 250);
  });

  it('keeps one leader when a standby\'s clock runs 60 s ahead (expiry is timed by the standby\'s own observation)', async () => {
    const clockAhead = new URL('./fixtures/clock-ahead.mjs', import.meta.url).pathname;
    const skewed = await startOperator('operator-skewed', saKubeconfig, { NODE_OPTIONS: `--import=${clockAhead}` });
    try {
      // Longer than the lease: a standby timing it by the holder's renewTime would take it.
      await new Promise((r) => setTimeout(r, (TEST_LEASE_SECONDS + 2) * 1000));
      expect({ live: (await operators[0]!.metrics()).get('wa_router_operator_leader'), skewed: (await skewed.metrics()).get('wa_router_operator_leader') }).toEqual({ live: 1, skewed: 0 });
      const lease = await kube.get<KubeObject & { spec: { holderIdentity: string } }>('/apis/coordination.k8s.io/v1/namespaces/wa-router-system/leases/wa-router-operator');
      expect(lease?.spec.holderIdentity).toBe('operator-a');
    } finally {
      await skewed.stop('SIGKILL');
    }
  });

  it('runs one leader among two processes; the standby takes over within the lease time when the leader dies', async () => {
    // A long lease for b: its restart below must not wait for it to expire (with the production
    // renew deadline, two thirds of it: rendering every resource after a takeover keeps a loaded
    // host's event loop busy for seconds).
    const LONG_LEASE = { OPERATOR_LEASE_SECONDS: '60', OPERATOR_RENEW_DEADLINE_SECONDS: '40' };
    const b = await startOperator('operator-b', saKubeconfig, LONG_LEASE);
    operators.push(b);
    await new Promise((r) => setTimeout(r, 3_000));
    const a = operators[0]!;
    expect((await a.metrics()).get('wa_router_operator_leader')).toBe(1);
    expect((await b.metrics()).get('wa_router_operator_leader')).toBe(0);
    expect([...(await b.metrics())].filter(([k]) => k.startsWith('wa_router_operator_reconciles_total'))).toEqual([]);

    await a.stop('SIGKILL');
    const killedAt = Date.now();
    await eventually('operator-b to lead', async () => (await b.metrics()).get('wa_router_operator_leader') === 1, 30_000, 200);
    const tookOverMs = Date.now() - killedAt;
    const ns = 'wa-op-minimal';
    const path = `/apis/apps/v1/namespaces/${ns}/deployments/wa-router-web`;
    await kube.delete(path);
    await eventually('operator-b to recreate the web Deployment', async () => (await kube.get(path)) !== undefined, 30_000, 250);
    console.log(`[operator] standby took the Lease ${tookOverMs} ms after the leader was killed (lease ${TEST_LEASE_SECONDS} s)`);
    // The lease runs from b's last sight of a renewal (up to one 2 s retry after it), plus one retry.
    expect(tookOverMs).toBeLessThan(TEST_LEASE_SECONDS * 1000 + 2 * 2_000);
    const lease = await kube.get<KubeObject & { spec: { holderIdentity: string } }>('/apis/coordination.k8s.io/v1/namespaces/wa-router-system/leases/wa-router-operator');
    expect(lease?.spec.holderIdentity).toBe('operator-b');
    expect((await b.metrics()).get('wa_router_operator_overlapping_reconciles_total')).toBe(0);

    // A restarted container keeps its pod's name: the Lease in that name is still its own.
    await b.stop('SIGKILL');
    const restarted = await startOperator('operator-b', saKubeconfig, LONG_LEASE);
    operators.push(restarted);
    await eventually('the restarted operator-b to lead before its 60 s lease expires', async () => (await restarted.metrics()).get('wa_router_operator_leader') === 1, 30_000, 200);
  });

  it('leaves the children to the garbage collector when the resource is deleted', async () => {
    const ns = 'wa-op-premium';
    const deps = await kube.list(`/apis/apps/v1/namespaces/${ns}/deployments`);
    expect(deps.length).toBeGreaterThan(0);
    await kube.delete(routerPath(ns));
    await eventually('the children to be collected', async () => {
      const left = [
        ...(await kube.list(`/apis/apps/v1/namespaces/${ns}/deployments`)),
        ...(await kube.list(`/apis/apps/v1/namespaces/${ns}/statefulsets`)),
        ...(await kube.list<KubeObject>(`/api/v1/namespaces/${ns}/configmaps`)).filter((c) => c.metadata.name !== 'kube-root-ca.crt'),
      ];
      return left.length === 0;
    }, 90_000, 1_000);
  });

  it('keeps a Ready resource Ready across periodic resyncs (every cache relisted and swapped in)', async () => {
    // A leader of its own with a 12 s resync instead of 300 s: 40 s of a healthy installation see
    // every informer relist three times (and a long lease: what is tested here is not the Lease).
    for (const o of operators) await o.stop('SIGTERM');
    const op = await startOperator('operator-resync', saKubeconfig, { OPERATOR_RESYNC_SECONDS: '12', OPERATOR_LEASE_SECONDS: '60', OPERATOR_RENEW_DEADLINE_SECONDS: '40' });
    operators.push(op);
    await eventually('operator-resync to lead', async () => (await op.metrics()).get('wa_router_operator_leader') === 1, 30_000, 200);
    const ns = 'wa-op-resync';
    namespaces.push(ns);
    await createNamespace(ns);
    await createRouter(ns, { preset: 'minimal', image: IMAGE });
    await eventually('Ready', async () => {
      await kubelet(kube, ns);
      return condition(await getRouter(ns), 'Ready')?.status === 'True';
    }, 170_000, 1_000);
    // Nothing changes from here on: every reconcile is a resync of a healthy installation.
    const notReady: string[] = [];
    let reads = 0;
    const until = Date.now() + 40_000;
    while (Date.now() < until) {
      const ready = condition(await getRouter(ns), 'Ready');
      reads++;
      if (ready?.status !== 'True') notReady.push(`${ready?.reason}: ${ready?.message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    console.log(`[operator] Ready=False in ${notReady.length} of ${reads} reads during 40 s of 12 s resyncs`);
    expect([...new Set(notReady)]).toEqual([]);
  }, 300_000);

  it('renews the Lease while a render holds its thread longer than the renew deadline', async () => {
    // This process renders the new resource's chart in 25 s, beyond a 20 s renew deadline: rendered
    // on the thread that renews the Lease, it would cost the leadership (and the process). The lease
    // is long for a loaded host's renewals to meet it easily otherwise.
    for (const o of operators) await o.stop('SIGTERM');
    const slowRender = new URL('./fixtures/slow-render.mjs', import.meta.url).pathname;
    const op = await startOperator('operator-slow-render', saKubeconfig, { NODE_OPTIONS: `--import=${slowRender}`, OPERATOR_LEASE_SECONDS: '30', OPERATOR_RENEW_DEADLINE_SECONDS: '20' });
    operators.push(op);
    try {
      await eventually('operator-slow-render to lead', async () => (await op.metrics()).get('wa_router_operator_leader') === 1, 30_000, 200);
      const ns = 'wa-op-slow-render';
      namespaces.push(ns);
      await createNamespace(ns);
      await createRouter(ns, { preset: 'minimal', image: IMAGE });
      // A process that lost its Lease has exited.
      const exited = new Promise<never>((_, reject) => op.child.once('exit', (code) => reject(new Error(`operator-slow-render exited (${code}): ${op.log().split('\n').slice(-3).join(' ')}`))));
      await Promise.race([reconciled(ns, 240_000), exited]);
      const m = await op.metrics();
      console.log(`[operator] reconciles with a 25 s render: ${(m.get('wa_router_operator_reconcile_duration_seconds_sum') ?? 0).toFixed(1)} s in all; the Lease (renew deadline 20 s) kept`);
      // The hold did happen (on the render thread), and the process still leads.
      expect(m.get('wa_router_operator_reconcile_duration_seconds_sum')).toBeGreaterThan(25);
      expect(op.child.exitCode).toBeNull();
      expect(m.get('wa_router_operator_leader')).toBe(1);
      expect(op.log()).not.toMatch(/could not renew the leader Lease/);
    } finally {
      await op.stop('SIGTERM');
      operators.push(await startOperator('operator-c', saKubeconfig));
    }
  }, 300_000);

  it('keeps watching through a watch that fails: the CRD deleted and installed again', async () => {
    // Every WhatsAppRouter watch and list now fails (404) until the CRD is back; client-node's
    // informer alone would stop for good.
    await kube.delete('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/whatsapprouters.wa-router.dev');
    await eventually('the CRD to be gone', async () => (await kube.get('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/whatsapprouters.wa-router.dev')) === undefined, 60_000, 500);
    await new Promise((r) => setTimeout(r, 3_000));
    await installOperator(kube);
    const ns = 'wa-op-standard';
    await eventually('the router to be created again', async () => {
      const r = await kube.request('POST', `${API}/namespaces/${ns}/whatsapprouters`, { apiVersion: 'wa-router.dev/v1alpha1', kind: 'WhatsAppRouter', metadata: { name: 'router', namespace: ns }, spec: { preset: 'minimal', image: IMAGE } });
      return r.status === 201;
    }, 30_000, 500);
    await reconciled(ns, 90_000);
  });
});
