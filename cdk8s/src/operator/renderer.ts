// Renders on worker threads: synthesizing a chart holds its thread for seconds on a loaded host,
// and the main thread renews the leader Lease (a leader whose loop is held past its renew deadline
// must stop leading). A few threads, so one slow resource does not hold back the others; a render
// past its time is ended by terminating its thread, which fails that render alone.
import { Worker } from 'node:worker_threads';
import type { Rendering, WhatsAppRouter } from './render.js';

type Reply = { rendering: Rendering; error?: undefined } | { error: string };

export interface RenderPoolOptions {
  /** Renders at once, each on a thread of its own. @default 2 */
  readonly threads?: number;
  /** A render still running after this long is ended, its thread terminated. @default 60_000 */
  readonly timeoutMs?: number;
}

export class RenderTimeoutError extends Error {
  override readonly name = 'RenderTimeoutError';
}

export class RenderPool {
  private readonly idle: Worker[] = [];
  private readonly all = new Set<Worker>();
  private readonly waiting: { resolve: (w: Worker) => void; reject: (e: Error) => void }[] = [];
  private readonly threads: number;
  readonly timeoutMs: number;

  constructor(opts: RenderPoolOptions = {}) {
    this.threads = opts.threads ?? 2;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  async render(cr: WhatsAppRouter): Promise<Rendering> {
    const worker = await this.acquire();
    return new Promise<Rendering>((resolve, reject) => {
      const done = (retire: boolean, settle: () => void) => {
        clearTimeout(timer);
        worker.off('message', onMessage).off('error', onError).off('exit', onExit);
        if (retire) {
          this.all.delete(worker);
          void worker.terminate();
          // A thread fewer: whoever waits gets a new one.
          const next = this.waiting.shift();
          if (next) this.spawn().then(next.resolve, next.reject);
        } else this.release(worker);
        settle();
      };
      const onMessage = (m: Reply) => done(false, () => (m.error !== undefined ? reject(new Error(`render failed: ${m.error}`)) : resolve(m.rendering)));
      const onError = (err: Error) => done(true, () => reject(err));
      const onExit = (code: number) => done(true, () => reject(new Error(`the render thread exited (${code})`)));
      const timer = setTimeout(() => done(true, () => reject(new RenderTimeoutError(`the render of ${cr.metadata.namespace}/${cr.metadata.name} took longer than ${this.timeoutMs} ms and was stopped`))), this.timeoutMs);
      worker.on('message', onMessage).on('error', onError).on('exit', onExit);
      worker.postMessage({ cr });
    });
  }

  private acquire(): Promise<Worker> {
    const w = this.idle.pop();
    if (w) return Promise.resolve(w);
    if (this.all.size < this.threads) return this.spawn();
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  private release(worker: Worker): void {
    const next = this.waiting.shift();
    if (next) next.resolve(worker);
    else this.idle.push(worker);
  }

  /** A new thread, once it has loaded the chart's code: a render's time starts after that. */
  private spawn(): Promise<Worker> {
    // The thread inherits the process's flags (`--import tsx` among them): it loads TypeScript as this one does.
    const worker = new Worker(new URL('./render-worker.ts', import.meta.url));
    worker.unref();
    this.all.add(worker);
    // A thread that died while idle is not handed out again.
    worker.once('exit', () => {
      this.all.delete(worker);
      const i = this.idle.indexOf(worker);
      if (i >= 0) this.idle.splice(i, 1);
    });
    return new Promise((resolve, reject) => {
      worker.once('message', () => resolve(worker));
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the render thread exited (${code}) while starting`)));
    });
  }

  async stop(): Promise<void> {
    const workers = [...this.all];
    this.all.clear();
    this.idle.length = 0;
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
