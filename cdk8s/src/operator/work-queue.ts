// A per-key work queue in the manner of client-go's: a key waits in the queue at most once, one
// reconcile per key runs at a time (a key added while it runs is queued again when it finishes),
// failures back off exponentially per key, and a fixed number of workers drain it.

export interface WorkQueueOptions {
  /** Reconciles running at once, for different keys. @default 4 */
  readonly workers?: number;
  /** First retry delay after a failure. @default 500 */
  readonly baseDelayMs?: number;
  /** Longest retry delay. @default 60_000 */
  readonly maxDelayMs?: number;
}

/** What a reconcile asks for next: nothing, or to run again after `requeueAfterMs`. */
export interface ReconcileResult {
  readonly requeueAfterMs?: number;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  /** Keys being reconciled, with when each began. */
  private readonly running = new Map<string, number>();
  /** Keys added while running: queued again when their reconcile ends. */
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; due: number }>();
  private active = 0;
  private stopped = true;
  private idle: (() => void)[] = [];
  private readonly workers: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(
    private readonly reconcile: (key: string) => Promise<ReconcileResult>,
    private readonly onError: (key: string, err: unknown, retryInMs: number) => void,
    opts: WorkQueueOptions = {},
  ) {
    this.workers = opts.workers ?? 4;
    this.baseDelayMs = opts.baseDelayMs ?? 500;
    this.maxDelayMs = opts.maxDelayMs ?? 60_000;
  }

  get depth(): number {
    return this.queue.length;
  }

  /** How long the oldest reconcile in flight has run (0 when none runs): a hung one shows here. */
  longestRunningMs(now = Date.now()): number {
    let oldest = now;
    for (const since of this.running.values()) oldest = Math.min(oldest, since);
    return now - oldest;
  }

  start(): void {
    this.stopped = false;
    this.pump();
  }

  /** Stops taking keys and waits for the reconciles in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t.timer);
    this.timers.clear();
    if (this.active > 0) await new Promise<void>((r) => this.idle.push(r));
  }

  add(key: string): void {
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.pump();
  }

  /** Adds the key after a delay; an earlier pending delay for it wins. */
  addAfter(key: string, ms: number): void {
    if (this.stopped) return;
    const due = Date.now() + ms;
    const existing = this.timers.get(key);
    if (existing && existing.due <= due) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.timers.set(key, { timer, due });
  }

  forget(key: string): void {
    this.failures.delete(key);
    const t = this.timers.get(key);
    if (t) clearTimeout(t.timer);
    this.timers.delete(key);
  }

  private pump(): void {
    while (!this.stopped && this.active < this.workers && this.queue.length > 0) {
      const key = this.queue.shift()!;
      this.queued.delete(key);
      this.running.set(key, Date.now());
      this.active++;
      void this.run(key);
    }
  }

  private async run(key: string): Promise<void> {
    try {
      const result = await this.reconcile(key);
      this.failures.delete(key);
      if (result.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (err) {
      const n = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, n);
      const delay = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (n - 1));
      this.onError(key, err, delay);
      this.addAfter(key, delay);
    } finally {
      this.running.delete(key);
      this.active--;
      if (this.dirty.delete(key)) this.add(key);
      if (this.active === 0) for (const r of this.idle.splice(0)) r();
      this.pump();
    }
  }
}
