// A circuit breaker per area, in the worker's memory: after `threshold` consecutive failed
// deliveries the area's events are left alone for `resetMs`; then one event probes it
// (half-open: the forwarder allows one in flight) and a success closes it. Each worker learns on its own, which costs at most
// `threshold` wasted attempts per worker.
export type AreaCircuitState = 'closed' | 'open' | 'half_open';

export class AreaCircuits {
  private readonly areas = new Map<number, { failures: number; openUntil: number }>();

  constructor(private readonly opts: { threshold: number; resetMs: number }) {}

  success(areaId: number): void {
    this.areas.delete(areaId);
  }

  /** Returns true when this failure opened the circuit. */
  failure(areaId: number, now = Date.now()): boolean {
    const a = this.areas.get(areaId) ?? { failures: 0, openUntil: 0 };
    a.failures++;
    const wasHalfOpen = a.openUntil > 0 && a.openUntil <= now;
    const opens = wasHalfOpen || (a.openUntil === 0 && a.failures >= this.opts.threshold);
    if (opens) a.openUntil = now + this.opts.resetMs;
    this.areas.set(areaId, a);
    return opens;
  }

  state(areaId: number, now = Date.now()): AreaCircuitState {
    const a = this.areas.get(areaId);
    if (!a || a.openUntil === 0) return 'closed';
    return a.openUntil > now ? 'open' : 'half_open';
  }

  /** Whether the area's last delivery failed (its circuit may still be closed). */
  failing(areaId: number): boolean {
    return this.areas.has(areaId);
  }

  failingAreas(): number[] {
    return [...this.areas.keys()];
  }

  /** Areas whose events must not be attempted now. */
  open(now = Date.now()): number[] {
    return [...this.areas].filter(([, a]) => a.openUntil > now).map(([id]) => id);
  }

  known(): number[] {
    return [...this.areas.keys()];
  }
}
