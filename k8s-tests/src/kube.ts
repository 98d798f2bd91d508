// A small Kubernetes client for the suite: server-side apply that reports the API server's
// warnings, discovery of each kind's path, pruning by our labels. Credentials and TLS come from
// a kubeconfig through @kubernetes/client-node, so any cluster (KUBECONFIG) works.
import https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import type { Manifest } from '@wa-router/cdk8s';

export const FIELD_MANAGER = 'wa-router';

export interface KubeResponse<T = unknown> {
  readonly status: number;
  readonly warnings: string[];
  readonly body: T;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  resourceVersion?: string;
  generation?: number;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
  managedFields?: { manager: string; operation: string; time?: string }[];
}
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

interface ApiResource {
  name: string;
  kind: string;
  namespaced: boolean;
}

export class Kube {
  private readonly kc = new KubeConfig();
  private readonly resources = new Map<string, ApiResource[]>();

  constructor(kubeconfig?: string) {
    if (kubeconfig) this.kc.loadFromFile(kubeconfig);
    else this.kc.loadFromDefault();
  }

  get server(): string {
    return this.kc.getCurrentCluster()?.server ?? '';
  }

  async request<T = unknown>(method: string, path: string, body?: unknown, contentType = 'application/json', accept = 'application/json'): Promise<KubeResponse<T>> {
    const url = new URL(path, this.server);
    const opts: https.RequestOptions = { method, headers: { accept } };
    await this.kc.applyToHTTPSOptions(opts);
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    if (payload !== undefined) opts.headers = { ...opts.headers, 'content-type': contentType, 'content-length': Buffer.byteLength(payload) };
    return new Promise((resolve, reject) => {
      const req = https.request(url, { ...opts, timeout: 30_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const warn = res.headers['warning'];
          const warnings = (Array.isArray(warn) ? warn : warn ? [warn] : []).map((w) => w.replace(/^299 - /, '').replace(/^"|"$/g, ''));
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            // not JSON (a plain-text error)
          }
          resolve({ status: res.statusCode ?? 0, warnings, body: parsed as T });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
      req.on('error', reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  private async resourcesOf(apiVersion: string, refresh = false): Promise<ApiResource[]> {
    if (!refresh && this.resources.has(apiVersion)) return this.resources.get(apiVersion)!;
    const r = await this.request<{ resources: ApiResource[] }>('GET', apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`);
    if (r.status !== 200) throw new Error(`discovery of ${apiVersion} failed: ${r.status} ${JSON.stringify(r.body)}`);
    const list = r.body.resources.filter((x) => !x.name.includes('/'));
    this.resources.set(apiVersion, list);
    return list;
  }

  /** The collection path of a kind, e.g. /apis/apps/v1/namespaces/wa/deployments. */
  async collectionPath(apiVersion: string, kind: string, namespace?: string): Promise<{ path: string; namespaced: boolean }> {
    let res = (await this.resourcesOf(apiVersion)).find((x) => x.kind === kind);
    // A CRD installed a moment ago: discovery may need a refresh.
    if (!res) res = (await this.resourcesOf(apiVersion, true)).find((x) => x.kind === kind);
    if (!res) throw new Error(`the API server does not serve ${apiVersion} ${kind}`);
    const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    return { path: res.namespaced ? `${base}/namespaces/${namespace ?? 'default'}/${res.name}` : `${base}/${res.name}`, namespaced: res.namespaced };
  }

  async objectPath(m: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } }): Promise<string> {
    return `${(await this.collectionPath(m.apiVersion, m.kind, m.metadata.namespace)).path}/${m.metadata.name}`;
  }

  /** Server-side apply of one object as our field manager. */
  async apply(m: Manifest | KubeObject, opts: { dryRun?: boolean; force?: boolean } = {}): Promise<KubeResponse<KubeObject>> {
    const q = new URLSearchParams({ fieldManager: FIELD_MANAGER, force: String(opts.force ?? true) });
    if (opts.dryRun) q.set('dryRun', 'All');
    return this.request<KubeObject>('PATCH', `${await this.objectPath(m)}?${q}`, m, 'application/apply-patch+yaml');
  }

  /** Applies every manifest in order (pruning is `make deploy PRUNE=1`'s, tested through it). */
  async applyAll(manifests: readonly (Manifest | KubeObject)[], opts: { dryRun?: boolean } = {}): Promise<{ objects: KubeObject[]; warnings: string[] }> {
    const objects: KubeObject[] = [];
    const warnings: string[] = [];
    for (const m of manifests) {
      const r = await this.apply(m, { dryRun: opts.dryRun });
      if (r.status >= 300) throw new Error(`apply ${m.kind}/${m.metadata.name} failed: ${r.status} ${JSON.stringify(r.body)}`);
      objects.push(r.body);
      warnings.push(...r.warnings.map((w) => `${m.kind}/${m.metadata.name}: ${w}`));
    }
    return { objects, warnings };
  }

  async get<T = KubeObject>(path: string): Promise<T | undefined> {
    const r = await this.request<T>('GET', path);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  async list<T = KubeObject>(path: string): Promise<T[]> {
    const r = await this.request<{ items: T[] }>('GET', path);
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.items;
  }

  async delete(path: string, gracePeriodSeconds?: number): Promise<void> {
    const q = gracePeriodSeconds === undefined ? '' : `?gracePeriodSeconds=${gracePeriodSeconds}`;
    const r = await this.request('DELETE', `${path}${q}`);
    if (r.status >= 300 && r.status !== 404) throw new Error(`DELETE ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  }
}

/** Polls until `check` returns a value (not undefined/false), bounded in time. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

export type Pod = KubeObject & { status?: { phase?: string; conditions?: { type: string; status: string }[] }; metadata: { deletionTimestamp?: string; labels?: Record<string, string> } };

/**
 * A kubelet's part, where no kubelet runs: every pod Ready (the migration Job's pod Succeeded);
 * terminating pods finished.
 */
export async function kubelet(kube: Kube, ns: string): Promise<void> {
  for (const p of await kube.list<Pod>(`/api/v1/namespaces/${ns}/pods`)) {
    const path = `/api/v1/namespaces/${ns}/pods/${p.metadata.name}`;
    if (p.metadata.deletionTimestamp) {
      await kube.delete(path, 0);
      continue;
    }
    const now = new Date().toISOString();
    if (p.metadata.labels?.['app.kubernetes.io/component'] === 'migrate') {
      if (p.status?.phase !== 'Succeeded') await kube.request('PATCH', `${path}/status`, { status: { phase: 'Succeeded', conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: now }] } }, 'application/merge-patch+json');
    } else if (!p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) {
      const ready = ['Initialized', 'ContainersReady', 'Ready', 'PodScheduled'].map((type) => ({ type, status: 'True', lastTransitionTime: now }));
      await kube.request('PATCH', `${path}/status`, { status: { phase: 'Running', conditions: ready } }, 'application/merge-patch+json');
    }
  }
}
