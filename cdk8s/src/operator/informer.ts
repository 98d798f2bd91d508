// An informer that keeps running: client-node's stops for good on any watch error but 410 Gone,
// so this one restarts it with exponential backoff, and relists on a period so an event lost
// anywhere is made up for.
import { makeInformer, type Informer, type KubernetesListObject, type KubernetesObject, type ObjectCache } from '@kubernetes/client-node';
import type { KubeApi, KubeObject } from './kube-api.js';

export interface ResilientInformerOptions {
  /** Collection path, e.g. /apis/apps/v1/deployments. */
  readonly path: string;
  readonly labelSelector?: string;
  /** Full relist (a new informer; `onChange` for what differs from the cache) this often. @default 300_000 */
  readonly relistMs?: number;
  readonly onChange: (obj: KubeObject, deleted: boolean) => void;
  readonly onError: (err: unknown, retryInMs: number) => void;
}

type Cache = Informer<KubernetesObject> & ObjectCache<KubernetesObject>;

export class ResilientInformer {
  /** The cache served to readers: always one whose list has completed. */
  private informer: Cache | undefined;
  /** A replacement being listed; it serves nothing until its list is complete. */
  private pending: Cache | undefined;
  private failures = 0;
  private retry: NodeJS.Timeout | undefined;
  private relist: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly api: KubeApi,
    private readonly opts: ResilientInformerOptions,
  ) {}

  /** True once a list has been received; stays true, as readers keep the last complete cache. */
  get hasSynced(): boolean {
    return this.informer !== undefined;
  }

  get(name: string, namespace?: string): KubeObject | undefined {
    return this.informer?.get(name, namespace) as KubeObject | undefined;
  }

  list(namespace?: string): KubeObject[] {
    return (this.informer?.list(namespace) ?? []) as KubeObject[];
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.replace();
  }

  /**
   * Lists into a new informer beside the one readers use and swaps it in only once its list is
   * complete: a relist or a restart never shows an empty cache. What changed between the two
   * caches is reported as the watch would have, which makes up for any event lost meanwhile.
   */
  private async replace(): Promise<void> {
    const { path, labelSelector } = this.opts;
    const query = labelSelector ? `?labelSelector=${encodeURIComponent(labelSelector)}` : '';
    let listed = false;
    const listFn = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      const list = await this.api.call<KubernetesListObject<KubernetesObject>>('GET', `${path}${query}`);
      // The API server leaves kind and apiVersion off the items of a built-in kind's list (a watch
      // event carries them); readers tell a Job from a Deployment by its kind.
      const kind = list.kind?.replace(/List$/, '');
      for (const item of list.items) {
        item.kind ??= kind;
        item.apiVersion ??= list.apiVersion;
      }
      listed = true;
      return list;
    };
    const informer: Cache = makeInformer(this.api.kc, path, listFn, labelSelector);
    const changed = (deleted: boolean) => (o: KubernetesObject) => {
      if (this.informer === informer) this.opts.onChange(o as KubeObject, deleted);
    };
    informer.on('add', changed(false));
    informer.on('update', changed(false));
    informer.on('delete', changed(true));
    // A stopped informer reports its aborted watch as an error too: only the live ones count.
    informer.on('error', (err: unknown) => {
      if (this.informer === informer || this.pending === informer) this.restart(err);
    });
    void this.pending?.stop();
    this.pending = informer;
    try {
      await informer.start();
    } catch (err) {
      if (this.pending === informer) this.restart(err);
    }
    if (this.pending !== informer || this.stopped || !listed) {
      // Superseded, stopped, or its list failed (a restart is already scheduled).
      if (this.pending === informer) this.pending = undefined;
      await informer.stop();
      return;
    }
    this.pending = undefined;
    this.failures = 0;
    const old = this.informer;
    this.informer = informer;
    await old?.stop();
    this.reportDifferences(old, informer);
    this.scheduleRelist();
  }

  /** Everything on the first list; after that, what a lost event could have hidden. */
  private reportDifferences(old: Cache | undefined, now: Cache): void {
    const key = (o: KubernetesObject) => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
    const before = new Map((old?.list() ?? []).map((o) => [key(o), o]));
    for (const o of now.list()) {
      const was = before.get(key(o));
      before.delete(key(o));
      if (was?.metadata?.resourceVersion !== o.metadata?.resourceVersion) this.opts.onChange(o as KubeObject, false);
    }
    for (const o of before.values()) this.opts.onChange(o as KubeObject, true);
  }

  private scheduleRelist(): void {
    clearTimeout(this.relist);
    this.relist = setTimeout(() => {
      if (this.stopped || this.pending) return;
      void this.replace();
    }, this.opts.relistMs ?? 300_000);
    this.relist.unref();
  }

  private restart(err: unknown): void {
    if (this.stopped || this.retry) return;
    this.failures++;
    const delay = Math.min(30_000, 500 * 2 ** Math.min(this.failures - 1, 6));
    this.opts.onError(err, delay);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (this.stopped) return;
      void this.replace();
    }, delay);
    this.retry.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    clearTimeout(this.relist);
    const pending = this.pending;
    this.pending = undefined;
    await Promise.all([this.informer?.stop(), pending?.stop()]);
  }
}
