// The alerts, as a Prometheus rule file: pure data from the preset. The PrometheusRule carries it
// in a cluster with the Prometheus Operator; charts/monitoring/<preset>/ has it as a plain rule file.
// Every expression names only metrics the service exports (the monitoring tests check it against
// a running stack) and every alert links to its section in the README.
import type { Preset } from '../presets.js';
import { nameOf } from '../constructs/common.js';

export interface AlertRule {
  readonly alert: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels: { readonly severity: 'critical' | 'warning' };
  readonly annotations: { readonly summary: string; readonly description: string; readonly runbook_url: string };
}

export interface RuleGroup {
  readonly name: string;
  readonly rules: readonly AlertRule[];
}

/** Where the README answers "what do I do now?" for each alert. */
export const RUNBOOK_BASE = 'https://github.com/wa-router/wa-router/blob/main/README.md';

/** The scrape jobs: the ServiceMonitors name them after the Services. */
export const SCRAPE_JOBS = { web: nameOf('web'), worker: nameOf('worker') } as const;

const alert = (
  name: string, severity: AlertRule['labels']['severity'], expr: string, forDuration: string | undefined,
  summary: string, description: string,
): AlertRule => ({
  alert: name,
  expr,
  ...(forDuration ? { for: forDuration } : {}),
  labels: { severity },
  annotations: { summary, description, runbook_url: `${RUNBOOK_BASE}#${name.toLowerCase()}` },
});

/** The preset's alert groups, for the Prometheus that scrapes `namespace`. */
export function alertGroups(preset: Preset, namespace: string): RuleGroup[] {
  const m = preset.monitoring;
  const p99 = preset.targets.webhookP99Ms / 1000;
  const up = (job: string) => `up{namespace="${namespace}", job="${job}"}`;
  return [
    {
      name: 'wa-router.webhooks',
      rules: [
        alert('WaRouterWebhook5xxRatio', 'critical',
          `sum by (namespace) (rate(wa_router_webhook_requests_total{outcome=~"unavailable|timeout|overloaded"}[5m])) / sum by (namespace) (rate(wa_router_webhook_requests_total[5m])) > 0.05`,
          '5m',
          'More than 5% of webhooks answered 503 for 5 minutes',
          '{{ $value | humanizePercentage }} of webhooks in {{ $labels.namespace }} could not be stored durably and were answered 503: Meta retries them, but only for a while.'),
        alert('WaRouterWebhookLatencyHigh', 'warning',
          `histogram_quantile(0.99, sum by (namespace, le) (rate(wa_router_webhook_duration_seconds_bucket{outcome="accepted"}[5m]))) > ${p99}`,
          '10m',
          `Webhook p99 above the ${preset.name} target of ${preset.targets.webhookP99Ms} ms`,
          'Accepted webhooks in {{ $labels.namespace }} took {{ $value | humanizeDuration }} at the 99th percentile for 10 minutes: Redis is slow to confirm, or the web pods are CPU-starved.'),
      ],
    },
    {
      name: 'wa-router.queues',
      rules: [
        alert('WaRouterDeadLettersGrowing', 'warning',
          'max by (namespace, queue) (delta(wa_router_queue_jobs{state="failed"}[15m])) > 0',
          undefined,
          'Dead letters are growing on queue {{ $labels.queue }}',
          'Jobs on {{ $labels.queue }} in {{ $labels.namespace }} exhausted their attempts in the last 15 minutes and wait in the dead-letter list for a replay.'),
        alert('WaRouterInboundBacklogOld', 'critical',
          `max by (namespace) (wa_router_queue_oldest_job_seconds{queue="inbound"}) > ${m.inboundBacklogSeconds}`,
          '5m',
          `Inbound webhooks wait more than ${m.inboundBacklogSeconds} s to be stored`,
          'The oldest inbound job in {{ $labels.namespace }} has waited {{ $value | humanizeDuration }}: workers are down, too few, or blocked on Postgres. Agents see messages late.'),
        // The age of the last applied chunk, not changes() over a window: a series born at its
        // value shows no change, and only running syncs export it (a declined one waits for nothing).
        alert('WaRouterHistorySyncStalled', 'warning',
          `time() - max by (namespace, channel) (wa_router_history_sync_last_applied_timestamp_seconds) > ${m.historyStallMinutes * 60}`,
          undefined,
          'History sync of channel {{ $labels.channel }} stalled',
          `The coexistence history sync of channel {{ $labels.channel }} in {{ $labels.namespace }} is running and applied no chunk for ${m.historyStallMinutes} minutes.`),
      ],
    },
    {
      name: 'wa-router.outbound',
      rules: [
        alert('WaRouterOutboundCircuitOpen', 'warning',
          'max by (namespace, channel) (wa_router_circuit_open) == 2',
          '5m',
          'Sends of channel {{ $labels.channel }} are stopped by the circuit breaker',
          'The Graph API failed repeatedly for channel {{ $labels.channel }} in {{ $labels.namespace }}; its messages wait until a probe succeeds.'),
        alert('WaRouterChannelPaused', 'critical',
          'max by (namespace) (wa_router_channels_paused) > 0',
          undefined,
          '{{ $value }} channel(s) paused on Meta token or account errors',
          'Meta rejected the access token or the account of a channel in {{ $labels.namespace }} (codes 190, 131005, ...); its outbound messages wait until the token is fixed.'),
      ],
    },
    {
      name: 'wa-router.infrastructure',
      rules: [
        alert('WaRouterDbPoolSaturated', 'warning',
          'max by (namespace, job, instance) (wa_router_db_pool_connections{state="waiting"}) > 0',
          '5m',
          'Queries wait for a Postgres connection in {{ $labels.instance }}',
          'Every pooled connection of {{ $labels.job }} {{ $labels.instance }} has been busy for 5 minutes and queries queue behind them: PgBouncer or Postgres is slow, or DB_POOL_MAX is too small.'),
        alert('WaRouterRedisReplicaMissing', 'critical',
          `max by (namespace) (wa_router_redis_online_replicas) < ${preset.redis.replicas}`,
          '2m',
          `Fewer than ${preset.redis.replicas} Redis replica(s) in sync with the master`,
          'The Redis master of {{ $labels.namespace }} has {{ $value }} replica(s) in sync (connected ones may still be resyncing): replicated acks rest on the master alone (ACK_REPLICA_FALLBACK=local) or answer 503 (none), and Sentinel has no good replica to promote.'),
        alert('WaRouterAckLocalFallback', 'warning',
          'sum by (namespace) (rate(wa_router_ack_local_fallback_total[5m])) > 0',
          '10m',
          'Webhooks acked on the Redis master alone for 10 minutes',
          'The web pods of {{ $labels.namespace }} have acked webhooks without a replica confirming them for 10 minutes: a master crash now loses up to a second of acked webhooks. A replica restart takes seconds; this long, one is failing to resync.'),
        alert('WaRouterRedisFailover', 'warning',
          'sum by (namespace) (increase(wa_router_redis_master_changes_total[15m])) > 0',
          undefined,
          'Redis master changed (failover or restart)',
          'The service found a different Redis master in {{ $labels.namespace }} in the last 15 minutes: Sentinel promoted a replica, or the master restarted.'),
        alert('WaRouterTargetDown', 'critical',
          `${up(SCRAPE_JOBS.web)} == 0 or ${up(SCRAPE_JOBS.worker)} == 0`,
          '2m',
          '{{ $labels.job }} {{ $labels.instance }} is down',
          'Prometheus cannot scrape {{ $labels.job }} {{ $labels.instance }} in {{ $labels.namespace }}: the pod is gone, not ready or its /metrics does not answer.'),
        alert('WaRouterTargetMissing', 'critical',
          `absent(${up(SCRAPE_JOBS.web)}) or absent(${up(SCRAPE_JOBS.worker)})`,
          '5m',
          '{{ $labels.job }} has no scrape target',
          'Prometheus has no {{ $labels.job }} target in {{ $labels.namespace }}: the Deployment has no pods, or the ServiceMonitor does not match.'),
      ],
    },
    {
      name: 'wa-router.router',
      rules: [
        alert('WaRouterAreaBacklog', 'warning',
          `max by (namespace, area) (wa_router_forward_oldest_seconds) > ${m.areaBacklogSeconds}`,
          '5m',
          'Area {{ $labels.area }} has undelivered events older than ' + `${m.areaBacklogSeconds} s`,
          "Events for area {{ $labels.area }} in {{ $labels.namespace }} wait {{ $value | humanizeDuration }} for its webhook: the area's receiver is down or failing."),
        alert('WaRouterAreaCircuitOpen', 'warning',
          'max by (namespace, area) (wa_router_forward_circuit) == 2',
          '5m',
          "Forwarding to area {{ $labels.area }} is stopped by its circuit breaker",
          "The area's webhook failed repeatedly; events wait until a probe succeeds."),
      ],
    },
  ];
}
