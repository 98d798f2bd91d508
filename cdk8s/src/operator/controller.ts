// The WhatsAppRouter controller: informers on the resources and on every kind they own feed a
// per-key work queue; a reconcile validates, renders the chart, applies it server-side, prunes
// what the rendering no longer has, and writes the status.
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { API_VERSION, KIND, PLURAL } from './crd.js';
import { KubeApiError, type KubeApi, type KubeObject, type ObjectMeta } from './kube-api.js';
import { ResilientInformer } from './informer.js';
import type { OperatorMetrics } from './metrics.js';
import {
  APPLYSET_ID_LABEL, GROUP_KINDS_ANNOTATION, PART_OF_LABEL, TOOLING, TOOLING_ANNOTATION,
  applySetId, groupKind, groupKindsValue, render, type Condition, type Rendering, type WhatsAppRouter,
} from './render.js';
import { componentStatus, setCondition } from './status.js';
import { WorkQueue, type ReconcileResult } from './work-queue.js';

export const FIELD_MANAGER = 'wa-router-operator';

/** Every kind the chart can render, with the collection it lives in (namespaced). */
const OWNED_KINDS = [
  { apiVersion: 'v1', kind: 'ServiceAccount', plural: 'serviceaccounts', watch: true },
  { apiVersion: 'v1', kind: 'ConfigMap', plural: 'configmaps', watch: true },
  { apiVersion: 'v1', kind: 'Service', plural: 'services', watch: true },
  { apiVersion: 'apps/v1', kind: 'StatefulSet', plural: 'statefulsets', watch: true },
  { apiVersion: 'apps/v1', kind: 'Deployment', plural: 'deployments', watch: true },
  { apiVersion: 'batch/v1', kind: 'Job', plural: 'jobs', watch: true },
  { apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', plural: 'horizontalpodautoscalers', watch: true },
  { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', plural: 'networkpolicies', watch: true },
  { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', plural: 'poddisruptionbudgets', watch: true },
  // Kinds of optional CRDs: listed per reconcile (a watch on a kind not served would only fail).
  { apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', plural: 'servicemonitors', watch: false },
  { apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule', plural: 'prometheusrules', watch: false },
  { apiVersion: 'keda.sh/v1alpha1', kind: 'ScaledObject', plural: 'scaledobjects', watch: false },
  { apiVersion: 'keda.sh/v1alpha1', kind: 'TriggerAuthentication', plural: 'triggerauthentications', watch: false },
] as const;

/** Server-side applies in flight at once for one resource. */
const APPLY_CONCURRENCY = 8;

async function inBatches<T, R>(items: readonly T[], size: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Condition messages stay far below the CRD's 32,768 cap: a server's answer can be any length. */
const MESSAGE_MAX = 4_096;
export const truncate = (message: string): string => (message.length <= MESSAGE_MAX ? message : `${message.slice(0, MESSAGE_MAX - 1)}…`);

const base = (apiVersion: string) => (apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`);

export interface ControllerOptions {
  /** Reconciles at once (different resources). @default 4 */
  readonly workers?: number;
  /** Every resource is reconciled at least this often. @default 300_000 */
  readonly resyncMs?: number;
  /** Re-check this soon while children are not ready yet. @default 5_000 */
  readonly progressingRequeueMs?: number;
  /** Renders a resource's chart. @default `render` on this thread */
  readonly render?: (cr: WhatsAppRouter) => Promise<Rendering>;
  /**
   * Asked right before every write: false once this process may no longer hold the leader Lease
   * (paused past its renew deadline, then woken). @default always true
   */
  readonly mayWrite?: () => boolean;
}

/** A write refused because this process may have lost the leader Lease. */
export class NotLeaderError extends Error {
  override readonly name = 'NotLeaderError';
}

interface Applied {
  hash: string;
  resourceVersion: string;
}

/** The kinds whose readiness makes a component's. */
const WORKLOAD_KINDS = ['Deployment', 'StatefulSet', 'Job'];

export class Controller {
  private readonly queue: WorkQueue;
  private readonly routers: ResilientInformer;
  private readonly children = new Map<string, ResilientInformer>();
  /** What was last applied per object and the version the server answered: a no-op resync skips it. */
  private readonly applied = new Map<string, Applied>();
  private readonly inFlight = new Set<string>();
  /** The rendering of each resource's current generation: a resync does not synthesize again. */
  private readonly renderings = new Map<string, { uid: string; generation: number; rendering: Rendering }>();
  /** The rendering last applied in full per resource: while paused, readiness is judged against it. */
  private readonly appliedRenderings = new Map<string, { uid: string; rendering: Rendering }>();
  private readonly resyncMs: number;
  private readonly progressingMs: number;
  private readonly render: (cr: WhatsAppRouter) => Promise<Rendering>;
  private readonly mayWrite: () => boolean;

  constructor(
    private readonly api: KubeApi,
    private readonly log: Logger,
    private readonly metrics: OperatorMetrics,
    opts: ControllerOptions = {},
  ) {
    this.resyncMs = opts.resyncMs ?? 300_000;
    this.progressingMs = opts.progressingRequeueMs ?? 5_000;
    this.render = opts.render ?? (async (cr) => render(cr));
    this.mayWrite = opts.mayWrite ?? (() => true);
    this.queue = new WorkQueue((key) => this.reconcileTimed(key), (key, err, retryInMs) => {
      this.log.warn({ key, err: (err as Error).message, retryInMs }, 'reconcile failed');
    }, { workers: opts.workers });
    metrics.queueDepth(() => this.queue.depth);
    const onError = (what: string) => (err: unknown, retryInMs: number) => this.log.warn({ what, err: (err as Error)?.message ?? String(err), retryInMs }, 'watch failed; restarting');
    this.routers = new ResilientInformer(api, {
      path: `${base(API_VERSION)}/${PLURAL}`,
      relistMs: this.resyncMs,
      onChange: (o) => this.queue.add(`${o.metadata.namespace}/${o.metadata.name}`),
      onError: onError(KIND),
    });
    for (const k of OWNED_KINDS.filter((x) => x.watch)) {
      this.children.set(k.kind, new ResilientInformer(api, {
        path: `${base(k.apiVersion)}/${k.plural}`,
        labelSelector: PART_OF_LABEL,
        relistMs: this.resyncMs,
        onChange: (o) => {
          const owner = o.metadata.ownerReferences?.find((r) => r.kind === KIND && r.apiVersion === API_VERSION);
          if (owner) this.queue.add(`${o.metadata.namespace}/${owner.name}`);
        },
        onError: onError(k.kind),
      }));
    }
  }

  /** How long the oldest reconcile in flight has run: liveness fails once it is past any bound. */
  longestReconcileMs(): number {
    return this.queue.longestRunningMs();
  }

  get synced(): boolean {
    return this.routers.hasSynced && [...this.children.values()].every((i) => i.hasSynced);
  }

  async start(): Promise<void> {
    await Promise.all([...this.children.values()].map((i) => i.start()));
    await this.routers.start();
    this.queue.start();
  }

  async stop(): Promise<void> {
    await Promise.all([this.routers, ...this.children.values()].map((i) => i.stop()));
    await this.queue.stop();
  }

  /** Before a write: another replica may lead by now, and two leaders must never both write. */
  private fence(what: string): void {
    if (!this.mayWrite()) throw new NotLeaderError(`${what}: not written, the leader Lease may be another replica's by now`);
  }

  private async reconcileTimed(key: string): Promise<ReconcileResult> {
    // The queue never runs one key twice at once; this counter proves it in production too.
    if (this.inFlight.has(key)) this.metrics.overlapping.inc();
    this.inFlight.add(key);
    const end = this.metrics.duration.startTimer();
    try {
      const { result, outcome } = await this.reconcile(key);
      this.metrics.reconciles.inc({ result: outcome });
      if (outcome === 'ready' || outcome === 'progressing' || outcome === 'paused') this.metrics.lastSuccess.setToCurrentTime();
      return result;
    } catch (err) {
      this.metrics.reconciles.inc({ result: 'error' });
      // The queue retries with backoff; meanwhile the status says why, not the log alone.
      if (!(err instanceof NotLeaderError)) await this.reportError(key, err).catch((e: unknown) => this.log.warn({ key, err: (e as Error).message }, 'the reconcile error could not be written to the status'));
      throw err;
    } finally {
      end();
      this.inFlight.delete(key);
    }
  }

  /** A reconcile that failed for a reason a retry may clear (a 5xx, a render that threw or timed out). */
  private async reportError(key: string, err: unknown): Promise<void> {
    const [namespace, name] = key.split('/') as [string, string];
    const cr = this.routers.get(name, namespace) as unknown as WhatsAppRouter | undefined;
    if (!cr || cr.metadata.deletionTimestamp) return;
    // The first line: a render's error carries its stack after it.
    const message = truncate(`the reconcile failed and is retried: ${((err as Error)?.message ?? String(err)).split('\n')[0]}`);
    const now = new Date().toISOString();
    const conditions = setCondition(cr.status?.conditions ?? [], { type: 'Degraded', status: 'True', reason: 'ReconcileError', message, observedGeneration: cr.metadata.generation }, now);
    // This generation is not reconciled: the observed one stays.
    await this.writeStatus(cr, { conditions, observedGeneration: cr.status?.observedGeneration });
  }

  private async reconcile(key: string): Promise<{ result: ReconcileResult; outcome: string }> {
    // A cache still waiting for its first list would read every child as missing.
    if (!this.synced) return { result: { requeueAfterMs: 1_000 }, outcome: 'unsynced' };
    const [namespace, name] = key.split('/') as [string, string];
    const cr = this.routers.get(name, namespace) as unknown as WhatsAppRouter | undefined;
    if (!cr || cr.metadata.deletionTimestamp) {
      // The garbage collector removes the children by their owner reference.
      for (const k of [...this.applied.keys()]) if (k.startsWith(`${key}|`)) this.applied.delete(k);
      this.renderings.delete(key);
      this.appliedRenderings.delete(key);
      this.queue.forget(key);
      return { result: {}, outcome: 'gone' };
    }
    const log = this.log.child({ key, generation: cr.metadata.generation });
    let cached = this.renderings.get(key);
    if (cached?.uid !== cr.metadata.uid || cached.generation !== cr.metadata.generation) {
      cached = { uid: cr.metadata.uid, generation: cr.metadata.generation, rendering: await this.render(cr) };
      this.renderings.set(key, cached);
    }
    const { rendering } = cached;
    const now = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1Z');
    let conditions = cr.status?.conditions ?? [];
    const set = (c: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>) => {
      conditions = setCondition(conditions, { ...c, observedGeneration: cr.metadata.generation }, now);
    };

    let invalid: string | undefined;
    if (!rendering.ok) {
      invalid = truncate(rendering.issues.map((i) => `${i.field}: ${i.message}`).join('; '));
      log.info({ issues: rendering.issues }, 'invalid spec: nothing applied');
      set({ type: 'Degraded', status: 'True', reason: 'InvalidSpec', message: invalid });
      // Paused, nothing would be applied anyway: the cluster's readiness is judged below as ever.
      if (!cr.spec.paused) {
        set({ type: 'Ready', status: 'False', reason: 'InvalidSpec', message: invalid });
        set({ type: 'Progressing', status: 'False', reason: 'InvalidSpec', message: 'the spec must be fixed first' });
        await this.writeStatus(cr, { conditions });
        return { result: {}, outcome: 'invalid' };
      }
    }
    const objects = rendering.ok ? rendering.objects : [];

    const id = applySetId(cr);
    /** The objects as the server answered the applies: newer than the caches until their events arrive. */
    const answered = new Map<string, KubeObject>();
    const problems: string[] = [];
    const taken: string[] = [];
    if (!cr.spec.paused && rendering.ok) {
      // As kubectl does: the parent names every kind the set may hold before anything is applied
      // (what it held before, and what comes now), and only what it holds once the rest is pruned.
      const wanted = rendering.objects.map(groupKind);
      const recorded = cr.metadata.annotations?.[GROUP_KINDS_ANNOTATION]?.split(',');
      const parent = await this.writeParent(cr, id, groupKindsValue([...(recorded ?? []), ...wanted]), cr.metadata);
      // The API server orders nothing among these objects (pods wait for their ConfigMaps and
      // Secrets by themselves), so they go out a few at a time rather than one by one.
      // As controller-runtime's AlreadyOwned: an object another resource controls (a second
      // WhatsAppRouter rendering the same names) is left alone and reported, never taken over.
      const controllers = await inBatches(rendering.objects, APPLY_CONCURRENCY, (o) => this.foreignController(key, cr, o));
      taken.push(...controllers.filter((p): p is string => p !== undefined));
      const free = rendering.objects.filter((_, i) => controllers[i] === undefined);
      const results = await inBatches(free, APPLY_CONCURRENCY, (o) => this.applyOne(key, o, answered));
      problems.push(...results.filter((p): p is string => p !== undefined));
      if (problems.length === 0 && taken.length === 0) {
        await this.prune(cr, id, rendering.objects, recorded && new Set([...recorded, ...wanted]));
        await this.writeParent(cr, id, groupKindsValue(wanted), parent);
        this.appliedRenderings.set(key, { uid: cr.metadata.uid, rendering });
      }
    }

    // Paused, the cluster runs what was last applied: a pending change is no reason to be unready.
    const last = this.appliedRenderings.get(key);
    let judged: KubeObject[] = objects;
    if (cr.spec.paused && last?.uid === cr.metadata.uid) judged = last.rendering.ok ? last.rendering.objects : [];
    // A process that never applied this resource (a restart, a failover): the workloads of its set.
    else if (cr.spec.paused) judged = WORKLOAD_KINDS.flatMap((k) => this.children.get(k)?.list(namespace) ?? []).filter((o) => o.metadata.labels?.[PART_OF_LABEL] === id);
    const workloads = judged
      .filter((o) => WORKLOAD_KINDS.includes(o.kind))
      .map((o) => {
        const cached = this.children.get(o.kind)?.get(o.metadata.name, namespace);
        const applied = answered.get(`${o.kind}/${o.metadata.name}`);
        // A cache that has not seen the new generation yet would report the old rollout as done.
        const live = applied && (applied.metadata.generation ?? 0) > (cached?.metadata.generation ?? 0) ? applied : cached;
        return { desired: o, live };
      });
    const components = componentStatus(workloads);
    const waiting = Object.entries(components).filter(([, c]) => c.ready < c.desired).map(([n, c]) => `${n} ${c.ready}/${c.desired}`);
    const summary = Object.fromEntries((['web', 'worker'] as const).map((c) => [c, components[c] ? `${components[c].ready}/${components[c].desired}` : '-']));

    let outcome: string;
    if (cr.spec.paused) {
      outcome = 'paused';
      // This reconcile succeeded: a failure reported before (a render that timed out) is over.
      if (invalid === undefined) set({ type: 'Degraded', status: 'False', reason: 'Paused', message: 'spec.paused is true: nothing is applied or pruned' });
      set({ type: 'Progressing', status: 'False', reason: 'Paused', message: 'spec.paused is true: nothing is applied or pruned' });
      set({ type: 'Ready', status: waiting.length ? 'False' : 'True', reason: 'Paused', message: waiting.length ? `not ready: ${waiting.join(', ')}` : 'every component is ready (paused)' });
    } else if (taken.length) {
      outcome = 'degraded';
      const message = truncate([...taken, ...problems].join('; '));
      set({ type: 'Degraded', status: 'True', reason: 'OwnedByAnotherRouter', message });
      set({ type: 'Ready', status: 'False', reason: 'OwnedByAnotherRouter', message });
      set({ type: 'Progressing', status: 'False', reason: 'OwnedByAnotherRouter', message: 'rename this resource\'s objects, or move it to a namespace of its own' });
    } else if (problems.length) {
      outcome = 'degraded';
      const message = truncate(problems.join('; '));
      set({ type: 'Degraded', status: 'True', reason: 'ApplyFailed', message });
      set({ type: 'Ready', status: 'False', reason: 'ApplyFailed', message });
      set({ type: 'Progressing', status: 'False', reason: 'ApplyFailed', message: 'a change the cluster refuses must be undone or made by hand' });
    } else if (waiting.length) {
      outcome = 'progressing';
      set({ type: 'Degraded', status: 'False', reason: 'Applied', message: `${objects.length} objects applied` });
      set({ type: 'Progressing', status: 'True', reason: 'ComponentsNotReady', message: `waiting for ${waiting.join(', ')}` });
      set({ type: 'Ready', status: 'False', reason: 'ComponentsNotReady', message: `not ready: ${waiting.join(', ')}` });
    } else {
      outcome = 'ready';
      set({ type: 'Degraded', status: 'False', reason: 'Applied', message: `${objects.length} objects applied` });
      set({ type: 'Progressing', status: 'False', reason: 'Reconciled', message: 'every component runs the applied spec' });
      set({ type: 'Ready', status: 'True', reason: 'AllComponentsReady', message: 'every component is ready' });
    }
    await this.writeStatus(cr, {
      conditions, components, summary,
      // Paused, this generation is not applied: the preset and image stay the ones that are.
      ...(cr.spec.paused || !rendering.ok ? {} : { preset: cr.spec.preset, image: rendering.image, appliedObjects: rendering.objects.length }),
    });
    log.debug({ outcome, problems }, 'reconciled');
    const requeueAfterMs = outcome === 'progressing' ? this.progressingMs : this.resyncMs;
    return { result: { requeueAfterMs }, outcome };
  }

  /** Names the live object's controller when that is not this resource. */
  private async foreignController(key: string, cr: WhatsAppRouter, o: KubeObject): Promise<string | undefined> {
    const informer = this.children.get(o.kind);
    let live = informer?.get(o.metadata.name, o.metadata.namespace);
    // Unwatched kinds are read once; an object this resource applied stays its own.
    if (!informer && !this.applied.has(`${key}|${o.kind}/${o.metadata.name}`)) {
      const kind = OWNED_KINDS.find((k) => k.kind === o.kind && k.apiVersion === o.apiVersion);
      const path = kind ? `${base(o.apiVersion)}/namespaces/${o.metadata.namespace}/${kind.plural}` : await this.api.collection(o.apiVersion, o.kind, o.metadata.namespace);
      const r = path ? await this.api.request<KubeObject>('GET', `${path}/${o.metadata.name}`) : undefined;
      if (r && r.status !== 200 && r.status !== 404) throw new KubeApiError(r.status, 'Get', `get ${o.kind}/${o.metadata.name}: ${r.status}`);
      live = r?.status === 200 ? r.body : undefined;
    }
    const owner = live?.metadata.ownerReferences?.find((r) => r.controller);
    if (!owner || owner.uid === cr.metadata.uid) return undefined;
    return `${o.kind}/${o.metadata.name} is controlled by ${owner.kind} ${owner.name} (uid ${owner.uid})`;
  }

  /** Server-side apply of one object, skipped when neither it nor the live object changed. */
  private async applyOne(key: string, o: KubeObject, answered: Map<string, KubeObject>): Promise<string | undefined> {
    const kind = OWNED_KINDS.find((k) => k.kind === o.kind && k.apiVersion === o.apiVersion);
    const path = kind ? `${base(o.apiVersion)}/namespaces/${o.metadata.namespace}/${kind.plural}` : await this.api.collection(o.apiVersion, o.kind, o.metadata.namespace);
    if (!path) return `${o.apiVersion} ${o.kind} is not served by this cluster (install its CRD, or turn it off in the overrides)`;
    const id = `${key}|${o.kind}/${o.metadata.name}`;
    const hash = createHash('sha256').update(JSON.stringify(o)).digest('base64url');
    const informer = this.children.get(o.kind);
    const live = informer?.get(o.metadata.name, o.metadata.namespace);
    const last = this.applied.get(id);
    if (informer && live && last && last.hash === hash && last.resourceVersion === live.metadata.resourceVersion) return undefined;
    this.fence(`${o.kind}/${o.metadata.name}`);
    try {
      const out = await this.api.apply(path, o, FIELD_MANAGER);
      this.applied.set(id, { hash, resourceVersion: out.metadata.resourceVersion ?? '' });
      answered.set(`${o.kind}/${o.metadata.name}`, out);
      return undefined;
    } catch (err) {
      this.applied.delete(id);
      if (err instanceof KubeApiError && err.status === 404) return `${o.apiVersion} ${o.kind} is not served by this cluster (install its CRD, or turn it off in the overrides)`;
      // The cluster refuses this change (an immutable field, a quota, a policy engine's denial):
      // the same change retried gets the same answer. A conflict or throttling (409, 429) may pass.
      if (err instanceof KubeApiError && err.status >= 400 && err.status < 500 && err.status !== 409 && err.status !== 429) return `${o.kind}/${o.metadata.name}: ${err.reason}: ${err.message.replace(/^PATCH \S+: /, '')}`;
      throw err;
    }
  }

  /**
   * The ApplySet parent's label and annotations on the resource (metadata only: no new generation),
   * sent only when they differ from `current`; returns the metadata now on the server.
   */
  private async writeParent(cr: WhatsAppRouter, id: string, kinds: string, current: ObjectMeta): Promise<ObjectMeta> {
    const labels = { [APPLYSET_ID_LABEL]: id };
    const annotations = { [TOOLING_ANNOTATION]: TOOLING, [GROUP_KINDS_ANNOTATION]: kinds };
    const has = (want: Record<string, string>, live: Record<string, string> | undefined) => Object.entries(want).every(([k, v]) => live?.[k] === v);
    if (has(labels, current.labels) && has(annotations, current.annotations)) return current;
    this.fence(`the ApplySet parent ${cr.metadata.name}`);
    const path = `${base(API_VERSION)}/namespaces/${cr.metadata.namespace}/${PLURAL}`;
    const out = await this.api.apply(path, { apiVersion: API_VERSION, kind: KIND, metadata: { name: cr.metadata.name, namespace: cr.metadata.namespace, labels, annotations } }, FIELD_MANAGER);
    return out.metadata;
  }

  /**
   * Deletes objects of this resource's ApplySet the rendering no longer has; only ones it owns.
   * Kinds without an informer are listed only when the parent's group kinds name them (all of
   * them when a parent has none recorded yet).
   */
  private async prune(cr: WhatsAppRouter, id: string, desired: readonly KubeObject[], kinds: ReadonlySet<string> | undefined): Promise<void> {
    const keep = new Set(desired.map((o) => `${o.kind}/${o.metadata.name}`));
    const ns = cr.metadata.namespace;
    const lists = await Promise.all(OWNED_KINDS.map(async (k) => {
      const informer = this.children.get(k.kind);
      if (informer) return informer.list(ns);
      if (kinds && !kinds.has(groupKind(k))) return [];
      const r = await this.api.request<{ items: KubeObject[] }>('GET', `${base(k.apiVersion)}/namespaces/${ns}/${k.plural}?labelSelector=${encodeURIComponent(`${PART_OF_LABEL}=${id}`)}`);
      if (r.status === 404) return [];
      if (r.status !== 200) throw new KubeApiError(r.status, 'List', `list ${k.kind}: ${r.status}`);
      return r.body.items;
    }));
    for (const [i, k] of OWNED_KINDS.entries()) {
      for (const o of lists[i]!) {
        if (o.metadata.labels?.[PART_OF_LABEL] !== id || keep.has(`${k.kind}/${o.metadata.name}`)) continue;
        if (!o.metadata.ownerReferences?.some((r) => r.uid === cr.metadata.uid)) continue;
        this.log.info({ key: `${ns}/${cr.metadata.name}`, object: `${k.kind}/${o.metadata.name}` }, 'pruning an object the rendering no longer has');
        this.fence(`pruning ${k.kind}/${o.metadata.name}`);
        const r = await this.api.request('DELETE', `${base(k.apiVersion)}/namespaces/${ns}/${k.plural}/${o.metadata.name}`, { propagationPolicy: 'Background' });
        if (r.status >= 300 && r.status !== 404) throw new KubeApiError(r.status, 'Delete', `prune ${k.kind}/${o.metadata.name}: ${r.status}`);
      }
    }
  }

  /** Writes the status through its subresource, unless it would not change. */
  private async writeStatus(cr: WhatsAppRouter, status: Record<string, unknown>): Promise<void> {
    const next = { observedGeneration: cr.metadata.generation, ...status };
    const prev = cr.status ?? {};
    // The server answers with its own key order: compared as values, not as text.
    if (Object.entries(next).every(([k, v]) => isDeepStrictEqual(prev[k], v))) return;
    // A merge patch merges maps: an entry the new status lacks (a component the rendering no
    // longer has) must be named as null to go.
    const patch: Record<string, unknown> = { ...next };
    for (const [k, v] of Object.entries(next)) {
      const old = prev[k];
      if (!isMap(v) || !isMap(old)) continue;
      const gone = Object.keys(old).filter((e) => !(e in v));
      patch[k] = Object.assign(Object.fromEntries(gone.map((e) => [e, null])), v);
    }
    this.fence(`the status of ${cr.metadata.name}`);
    const path = `${base(API_VERSION)}/namespaces/${cr.metadata.namespace}/${PLURAL}/${cr.metadata.name}/status`;
    const r = await this.api.request('PATCH', path, { status: patch }, 'application/merge-patch+json');
    // Gone meanwhile: the next event says so.
    if (r.status === 404) return;
    if (r.status >= 300) throw new KubeApiError(r.status, 'Status', `status of ${cr.metadata.name}: ${r.status} ${JSON.stringify(r.body)}`);
  }
}
