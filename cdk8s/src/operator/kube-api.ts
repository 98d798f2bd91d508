// The operator's door to the API server: plain HTTPS with the kubeconfig's credentials (in-cluster
// or a file; impersonation included), discovery of each kind's path, and server-side apply with
// the apply-patch content type (any other content type would be a strategic merge). Every request
// is counted, so a resync's cost can be measured.
import https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  deletionTimestamp?: string;
  creationTimestamp?: string;
}
export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export interface KubeResponse<T = unknown> {
  readonly status: number;
  readonly body: T;
}

export class KubeApiError extends Error {
  override readonly name = 'KubeApiError';
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

interface ApiResource {
  name: string;
  kind: string;
  namespaced: boolean;
}

export class KubeApi {
  readonly kc = new KubeConfig();
  private readonly discovery = new Map<string, ApiResource[] | null>();
  /** Every request sent, by verb; read by the metrics and the measurements. */
  requests = 0;
  onRequest: (method: string) => void = () => {};

  constructor(kubeconfig?: string) {
    if (kubeconfig) this.kc.loadFromFile(kubeconfig);
    else this.kc.loadFromDefault();
  }

  async request<T = unknown>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<KubeResponse<T>> {
    this.requests++;
    this.onRequest(method);
    const server = this.kc.getCurrentCluster()?.server;
    if (!server) throw new Error('the kubeconfig names no cluster');
    const opts: https.RequestOptions = { method, headers: { accept: 'application/json' } };
    await this.kc.applyToHTTPSOptions(opts);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    if (payload !== undefined) opts.headers = { ...opts.headers, 'content-type': contentType, 'content-length': Buffer.byteLength(payload) };
    return new Promise((resolve, reject) => {
      const req = https.request(new URL(path, server), { ...opts, timeout: 30_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            // a plain-text error body stays text
          }
          resolve({ status: res.statusCode ?? 0, body: parsed as T });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
      req.on('error', reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  /** The response body, or a KubeApiError with the server's reason and message. */
  async call<T = unknown>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    const r = await this.request<T>(method, path, body, contentType);
    if (r.status >= 300) {
      const s = r.body as { reason?: string; message?: string; details?: { causes?: { field?: string; message?: string }[] } } | undefined;
      // A cause's message repeats the whole rejected value before its verdict; the verdict is what a person acts on.
      const causes = s?.details?.causes?.map((c) => `${c.field ?? ''}: ${(c.message ?? '').split(': ').at(-1)}`);
      const text = causes?.length ? causes.join('; ') : (s?.message ?? JSON.stringify(r.body));
      throw new KubeApiError(r.status, s?.reason ?? String(r.status), `${method} ${path.split('?')[0]}: ${r.status} ${text}`);
    }
    return r.body;
  }

  /** Discovery of a group version, cached; null when the server does not serve it (a CRD not installed). */
  private async resources(apiVersion: string): Promise<ApiResource[] | null> {
    if (this.discovery.has(apiVersion)) return this.discovery.get(apiVersion)!;
    const r = await this.request<{ resources: ApiResource[] }>('GET', apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`);
    if (r.status === 404) return null;
    if (r.status !== 200) throw new KubeApiError(r.status, 'Discovery', `discovery of ${apiVersion}: ${r.status}`);
    const list = r.body.resources.filter((x) => !x.name.includes('/'));
    this.discovery.set(apiVersion, list);
    return list;
  }

  /** The collection path of a kind in a namespace, or null when the cluster does not serve the kind. */
  async collection(apiVersion: string, kind: string, namespace?: string): Promise<string | null> {
    const res = (await this.resources(apiVersion))?.find((x) => x.kind === kind);
    if (!res) {
      // Not cached as absent: a CRD installed later is found on the next reconcile.
      this.discovery.delete(apiVersion);
      return null;
    }
    const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    return res.namespaced ? `${base}/namespaces/${namespace ?? 'default'}/${res.name}` : `${base}/${res.name}`;
  }

  /** Server-side apply as `manager`, taking over fields other managers hold (`force`). */
  async apply(path: string, obj: KubeObject, manager: string): Promise<KubeObject> {
    const q = new URLSearchParams({ fieldManager: manager, force: 'true' });
    return this.call<KubeObject>('PATCH', `${path}/${obj.metadata.name}?${q}`, obj, 'application/apply-patch+yaml');
  }
}
