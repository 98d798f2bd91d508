// The operator's own Prometheus registry (it never shares a process with the service's).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconciles = new Counter({ name: 'wa_router_operator_reconciles_total', help: 'Reconciles by result: ready, progressing, paused, degraded, invalid, gone, unsynced, error.', labelNames: ['result'], registers: [this.registry] });
  readonly duration = new Histogram({ name: 'wa_router_operator_reconcile_duration_seconds', help: 'Time one reconcile took.', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry] });
  readonly lastSuccess = new Gauge({ name: 'wa_router_operator_last_success_timestamp_seconds', help: 'When a reconcile last ended without an error.', registers: [this.registry] });
  readonly apiRequests = new Counter({ name: 'wa_router_operator_api_requests_total', help: 'Requests sent to the API server (watches excepted), by verb.', labelNames: ['verb'], registers: [this.registry] });
  readonly leader = new Gauge({ name: 'wa_router_operator_leader', help: '1 while this process holds the leader Lease.', registers: [this.registry] });
  readonly overlapping = new Counter({ name: 'wa_router_operator_overlapping_reconciles_total', help: 'Reconciles started while one for the same resource ran (always 0 unless the work queue is broken).', registers: [this.registry] });

  queueDepth(read: () => number): void {
    new Gauge({ name: 'wa_router_operator_queue_depth', help: 'Resources waiting for a reconcile.', registers: [this.registry], collect() { this.set(read()); } });
  }
}
