// The router's metrics, registered on the process registry.
import client from 'prom-client';
import type { Registry } from '../metrics/registry.js';

export function createRouterMetrics(registry: Registry) {
  return {
    deliveries: new client.Counter({ name: 'wa_router_forward_deliveries_total', help: 'Delivery attempts to areas by result (success, retry, dead, gone)', labelNames: ['area', 'result'] as const, registers: [registry] }),
    latency: new client.Histogram({
      name: 'wa_router_forward_latency_seconds',
      help: "Receivers' answer time per delivery attempt",
      labelNames: ['area'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15],
      registers: [registry],
    }),
    claims: new client.Counter({ name: 'wa_router_forward_claims_total', help: 'Claims of the forwarding worker by result (taken: at least one queue taken; empty: nothing due; full: every slot in delivery, nothing claimed; capped: nothing claimed while some area was held back by its per-area cap, its open circuit or the failing areas\' budget, whose due events, if any, wait; failed)', labelNames: ['result'] as const, registers: [registry] }),
    claimWakeups: new client.Counter({ name: 'wa_router_forward_claim_wakeups_total', help: 'Idle forwarding worker resumed, by what woke it (wake: a store, a due retry or a freed slot; poll: the safety-net poll found it idle)', labelNames: ['by'] as const, registers: [registry] }),
    claimedEvents: new client.Counter({ name: 'wa_router_forward_claimed_events_total', help: 'Events the forwarding worker claimed (each run\'s head and the events that follow it); above the deliveries, the difference is events read and built again because their run ended before them', registers: [registry] }),
    runChecks: new client.Counter({ name: 'wa_router_forward_run_checks_total', help: 'Runs past their window, by outcome of the check (continued: nothing sorts before the rest, the run goes on; ended: an event stored meanwhile sorts before the rest, or the head is no longer leased)', labelNames: ['result'] as const, registers: [registry] }),
    botReplies: new client.Counter({ name: 'wa_router_bot_replies_total', help: 'Automated messages sent by the router, by kind', labelNames: ['kind'] as const, registers: [registry] }),
    unlimited: new client.Counter({ name: 'wa_router_rate_limit_unlimited_total', help: 'Requests the rate limits served unchecked because Redis was unavailable', registers: [registry] }),
    loopLimited: new client.Counter({ name: 'wa_router_loop_limit_hits_total', help: 'Automated replies withheld because a conversation reached the anti-loop limit', registers: [registry] }),
  };
}

export type RouterMetrics = ReturnType<typeof createRouterMetrics>;
