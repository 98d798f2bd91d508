// Renders on a worker thread: synthesizing a chart holds its thread for seconds on a loaded host,
// and the main thread renews the leader Lease (a leader whose loop is held past its renew deadline
// must stop leading).
import { Worker } from 'node:worker_threads';
import type { Rendering, WhatsAppRouter } from './render.js';

type Reply = { id: number; rendering: Rendering; error?: undefined } | { id: number; error: string };
type Pending = Map<number, { resolve: (r: Rendering) => void; reject: (e: Error) => void }>;

export class RenderThread {
  private thread: { worker: Worker; pending: Pending } | undefined;
  private next = 0;

  render(cr: WhatsAppRouter): Promise<Rendering> {
    const { worker, pending } = this.thread ?? this.spawn();
    const id = this.next++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, cr });
    });
  }

  private spawn(): { worker: Worker; pending: Pending } {
    // The thread inherits the process's flags (`--import tsx` among them): it loads TypeScript as this one does.
    const worker = new Worker(new URL('./render-worker.ts', import.meta.url));
    worker.unref();
    const pending: Pending = new Map();
    const thread = { worker, pending };
    worker.on('message', (m: Reply) => {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.error !== undefined) p?.reject(new Error(`render failed: ${m.error}`));
      else p?.resolve(m.rendering);
    });
    // A thread that died takes its renders with it; the next render starts another.
    const fail = (err: Error) => {
      if (this.thread === thread) this.thread = undefined;
      for (const p of pending.values()) p.reject(err);
      pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the render thread exited (${code})`)));
    this.thread = thread;
    return thread;
  }

  async stop(): Promise<void> {
    const worker = this.thread?.worker;
    this.thread = undefined;
    await worker?.terminate();
  }
}
