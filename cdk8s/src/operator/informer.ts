// An informer that keeps running: client-node's stops for good on any watch error but 410 Gone,
// so this one restarts it with exponential backoff, and relists on a period so an event lost
// anywhere is made up for.
import { makeInformer, type Informer, type KubernetesListObject, type KubernetesObject, type ObjectCache } from '@kubernetes/client-node';
import type { KubeApi, KubeObject } from './kube-api.js';

export interface ResilientInformerOptions {
  /** Collection path, e.g. /apis/apps/v1/deployments. */
  readonly path: string;
  readonly labelSelector?: string;
  /** Full relist (a new informer: `onChange` for every object) this often. @default 300_000 */
  readonly relistMs?: number;
  readonly onChange: (obj: KubeObject, deleted: boolean) => void;
  readonly onError: (err: unknown, retryInMs: number) => void;
}

export class ResilientInformer {
  private informer: (Informer<KubernetesObject> & ObjectCache<KubernetesObject>) | undefined;
  private failures = 0;
  private retry: NodeJS.Timeout | undefined;
  private relist: NodeJS.Timeout | undefined;
  private stopped = false;
  private synced = false;

  constructor(
    private readonly api: KubeApi,
    private readonly opts: ResilientInformerOptions,
  ) {}

  /** True once the first list has been received. */
  get hasSynced(): boolean {
    return this.synced;
  }

  get(name: string, namespace?: string): KubeObject | undefined {
    return this.informer?.get(name, namespace) as KubeObject | undefined;
  }

  list(namespace?: string): KubeObject[] {
    return (this.informer?.list(namespace) ?? []) as KubeObject[];
  }

  async start(): Promise<void> {
    this.stopped = false;
    const { path, labelSelector } = this.opts;
    const query = labelSelector ? `?labelSelector=${encodeURIComponent(labelSelector)}` : '';
    const listFn = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      const list = await this.api.call<KubernetesListObject<KubernetesObject>>('GET', `${path}${query}`);
      this.synced = true;
      this.failures = 0;
      return list;
    };
    const informer = makeInformer(this.api.kc, path, listFn, labelSelector);
    const changed = (deleted: boolean) => (o: KubernetesObject) => this.opts.onChange(o as KubeObject, deleted);
    informer.on('add', changed(false));
    informer.on('update', changed(false));
    informer.on('delete', changed(true));
    informer.on('error', (err: unknown) => this.restart(err));
    this.informer = informer;
    try {
      await informer.start();
    } catch (err) {
      this.restart(err);
    }
    this.scheduleRelist();
  }

  private scheduleRelist(): void {
    clearTimeout(this.relist);
    this.relist = setTimeout(() => {
      if (this.stopped) return;
      void this.informer?.stop().then(() => this.start());
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
      void this.informer?.stop().then(() => this.start());
    }, delay);
    this.retry.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    clearTimeout(this.relist);
    await this.informer?.stop();
  }
}
