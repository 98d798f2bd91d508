// Coalesces the writes of jobs in flight at the same moment into one bulk write: while
// a write runs, new requests gather, and go together in the next one. Round trips and
// statement planning are paid per write, not per job.

export interface CoalescerOptions<I, R> {
  /** Writes many requests' items at once. */
  readonly write: (items: I[]) => Promise<R>;
  /** Writes must not be merged after this error (e.g. one bad row): each request retries alone. */
  readonly splitOn: (err: unknown) => boolean;
  /**
   * Writes allowed at the same time.
   * @defaultValue 2
   */
  readonly parallel?: number;
  /** @defaultValue 2000 */
  readonly maxItems?: number;
}

interface Request<I, R> {
  readonly items: I[];
  resolve(r: R): void;
  reject(e: unknown): void;
}

export class WriteCoalescer<I, R> {
  private waiting: Request<I, R>[] = [];
  private running = 0;

  constructor(private readonly opts: CoalescerOptions<I, R>) {}

  submit(items: I[]): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ items, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < (this.opts.parallel ?? 2) && this.waiting.length > 0) {
      const max = this.opts.maxItems ?? 2000;
      const group: Request<I, R>[] = [];
      let n = 0;
      while (this.waiting.length > 0 && (group.length === 0 || n + this.waiting[0]!.items.length <= max)) {
        const r = this.waiting.shift()!;
        group.push(r);
        n += r.items.length;
      }
      this.running++;
      void this.run(group).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  private async run(group: Request<I, R>[]): Promise<void> {
    try {
      const result = await this.opts.write(group.flatMap((r) => r.items));
      for (const r of group) r.resolve(result);
    } catch (err) {
      if (group.length === 1 || !this.opts.splitOn(err)) {
        for (const r of group) r.reject(err);
        return;
      }
      // Someone's rows were refused: write each request alone so only its owner fails.
      for (const r of group) await this.opts.write(r.items).then(r.resolve, r.reject);
    }
  }
}
