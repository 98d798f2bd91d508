// The Grafana dashboard: one row per concern, every panel a PromQL query over the service's own
// metrics. Pure data from the preset (its webhook latency target is drawn on the latency panel).
import type { Preset } from '../presets.js';

export interface PanelQuery {
  readonly expr: string;
  readonly legend: string;
}

export interface Panel {
  readonly title: string;
  readonly description: string;
  readonly unit: string;
  readonly queries: readonly PanelQuery[];
  /** A red line at this value (the preset's target). */
  readonly threshold?: number;
}

export interface PanelRow {
  readonly title: string;
  readonly panels: readonly Panel[];
}

const R = '$__rate_interval';

/** The namespaces with a wa-router web or worker target, for the dashboard's namespace picker. */
const NAMESPACES_QUERY = 'label_values(up{job=~"wa-router-(web|worker)"}, namespace)';

/** The panels, grouped in rows: the README lists them from here. */
export function dashboardRows(preset: Preset): PanelRow[] {
  const quantiles = (metric: string, by: string, labels = '') => [0.5, 0.99].map((q) => ({
    expr: `histogram_quantile(${q}, sum by (${by}le) (rate(${metric}_bucket${labels}[${R}])))`,
    legend: `p${q * 100}${by ? ` {{${by.replace(/, $/, '')}}}` : ''}`,
  }));
  return [
    {
      title: 'Webhooks',
      panels: [
        { title: 'Webhook rate by outcome', unit: 'reqps', description: 'Requests on /webhooks/whatsapp: accepted (durably queued), 503s (unavailable, timeout, overloaded), rejected signatures, malformed bodies.', queries: [{ expr: `sum by (outcome) (rate(wa_router_webhook_requests_total[${R}]))`, legend: '{{outcome}}' }] },
        { title: 'Webhook latency (accepted)', unit: 's', description: `First byte to answer of accepted webhooks. The line is the ${preset.name} target, ${preset.targets.webhookP99Ms} ms at p99.`, queries: quantiles('wa_router_webhook_duration_seconds', '', '{outcome="accepted"}'), threshold: preset.targets.webhookP99Ms / 1000 },
        { title: 'Enqueue rejections and bytes waiting for Redis', unit: 'short', description: 'Webhooks answered 503 because Redis did not confirm in time or too many bytes were waiting; bytes of bodies waiting for Redis now.', queries: [{ expr: `sum by (reason) (rate(wa_router_enqueue_rejections_total[${R}]))`, legend: '{{reason}}/s' }, { expr: 'sum(wa_router_ingest_pending_bytes)', legend: 'pending bytes' }] },
      ],
    },
    {
      title: 'Queues',
      panels: [
        { title: 'Queue depth', unit: 'short', description: 'Jobs waiting, prioritized (history), delayed (retries) and active, per queue.', queries: [{ expr: 'max by (queue, state) (wa_router_queue_jobs{state=~"waiting|prioritized|delayed|active"})', legend: '{{queue}} {{state}}' }] },
        { title: 'Oldest waiting job age', unit: 's', description: 'How long the job that has waited longest to start has waited, per queue.', queries: [{ expr: 'max by (queue) (wa_router_queue_oldest_job_seconds)', legend: '{{queue}}' }] },
        { title: 'Dead letters', unit: 'short', description: 'Jobs that exhausted their attempts, per queue: replay them with POST /v1/dead-letters/:id/replay once the cause is fixed.', queries: [{ expr: 'max by (queue) (wa_router_queue_jobs{state="failed"})', legend: '{{queue}}' }] },
        { title: 'Jobs finished by result', unit: 'ops', description: 'Completed, retried and dead-lettered jobs per queue.', queries: [{ expr: `sum by (queue, result) (rate(wa_router_jobs_total[${R}]))`, legend: '{{queue}} {{result}}' }] },
      ],
    },
    {
      title: 'Messages',
      panels: [
        { title: 'Messages and statuses stored', unit: 'ops', description: 'Rows inserted (duplicates not counted): inbound messages, statuses, history messages, Business app echoes.', queries: [
          { expr: `sum(rate(wa_router_inbound_messages_stored_total[${R}]))`, legend: 'inbound messages' },
          { expr: `sum(rate(wa_router_statuses_stored_total[${R}]))`, legend: 'statuses' },
          { expr: `sum(rate(wa_router_history_messages_stored_total[${R}]))`, legend: 'history messages' },
          { expr: `sum(rate(wa_router_echo_messages_stored_total[${R}]))`, legend: 'echoes' },
        ] },
        { title: 'Duplicates and unrouted events', unit: 'ops', description: "Meta's redeliveries seen again; events for numbers no channel serves (kept, not routed).", queries: [{ expr: `sum(rate(wa_router_duplicate_events_total[${R}]))`, legend: 'duplicates' }, { expr: `sum(rate(wa_router_unrouted_events_total[${R}]))`, legend: 'unrouted' }] },
      ],
    },
    {
      title: 'Outbound',
      panels: [
        { title: 'Outbound sends by result', unit: 'ops', description: 'Graph API send attempts: accepted, unknown (timeout after the request was written), retry, throttle (Meta pacing), permanent, pause_channel.', queries: [{ expr: `sum by (result) (rate(wa_router_outbound_sends_total[${R}]))`, legend: '{{result}}' }] },
        { title: 'Meta errors by code', unit: 'ops', description: 'Graph API answers that were errors, by Meta error code.', queries: [{ expr: `sum by (outcome) (rate(wa_router_graph_request_duration_seconds_count{outcome!="ok"}[${R}]))`, legend: '{{outcome}}' }] },
        { title: 'Graph API latency', unit: 's', description: 'Send latency of successful Graph API calls.', queries: quantiles('wa_router_graph_request_duration_seconds', '', '{outcome="ok"}') },
        { title: 'Circuit state per channel', unit: 'short', description: '0 closed, 1 half-open, 2 open (sends wait).', queries: [{ expr: 'max by (channel) (wa_router_circuit_open)', legend: 'channel {{channel}}' }] },
        { title: 'Pacing', unit: 'ops', description: "Sends postponed by Meta's pacing (throttle) or an open circuit, and sends whose outcome is unknown (timeouts).", queries: [
          { expr: `sum(rate(wa_router_outbound_sends_total{result="throttle"}[${R}]))`, legend: 'throttled' },
          { expr: `sum(rate(wa_router_circuit_waits_total[${R}]))`, legend: 'circuit waits' },
          { expr: `sum(rate(wa_router_outbound_unknown_outcome_total[${R}]))`, legend: 'unknown outcome' },
        ] },
        { title: 'Paused channels', unit: 'short', description: 'Channels paused on token or account errors: save a new token with POST /v1/channels.', queries: [{ expr: 'max(wa_router_channels_paused)', legend: 'paused' }] },
      ],
    },
    {
      title: 'History sync',
      panels: [
        { title: 'History sync progress', unit: 'percent', description: 'Coexistence history import per channel, as Meta reports it.', queries: [{ expr: 'max by (channel) (wa_router_history_sync_progress)', legend: 'channel {{channel}}' }] },
        { title: 'History chunks', unit: 'short', description: 'Chunks received, applied and failed per channel.', queries: [{ expr: 'max by (channel, state) (wa_router_history_sync_chunks)', legend: '{{channel}} {{state}}' }] },
      ],
    },
    {
      title: 'Infrastructure',
      panels: [
        { title: 'DB pool', unit: 'short', description: 'Postgres pool connections per process: total, idle, and queries waiting for one.', queries: [{ expr: 'sum by (job, instance, state) (wa_router_db_pool_connections)', legend: '{{instance}} {{state}}' }] },
        { title: 'Redis replicas and master changes', unit: 'short', description: 'Replicas connected to the master, and those in sync (acks count only these); failovers (or master restarts) seen in the last hour.', queries: [{ expr: 'max(wa_router_redis_connected_replicas)', legend: 'replicas connected' }, { expr: 'max(wa_router_redis_online_replicas)', legend: 'replicas in sync' }, { expr: 'max(increase(wa_router_redis_master_changes_total[1h]))', legend: 'master changes (1h)' }] },
        { title: 'Realtime clients', unit: 'short', description: 'Open SSE and WebSocket streams, summed over web pods.', queries: [{ expr: 'sum(wa_router_realtime_clients)', legend: 'clients' }] },
        { title: 'Targets up', unit: 'short', description: 'Scraped web and worker processes answering /metrics.', queries: [{ expr: 'sum by (job) (up{job=~"wa-router-(web|worker)"})', legend: '{{job}}' }] },
      ],
    },
    {
      title: 'Router forwarding',
      panels: [
        { title: 'Deliveries per area', unit: 'ops', description: "Delivery attempts to areas' webhooks by result: success, retry, dead, gone.", queries: [{ expr: `sum by (area, result) (rate(wa_router_forward_deliveries_total[${R}]))`, legend: '{{area}} {{result}}' }] },
        { title: 'Delivery latency per area', unit: 's', description: "Receivers' answer time.", queries: quantiles('wa_router_forward_latency_seconds', 'area, ') },
        { title: 'Backlog per area', unit: 'short', description: 'Events waiting to be delivered, and the age of the oldest.', queries: [{ expr: 'max by (area) (wa_router_forward_backlog)', legend: '{{area}} events' }, { expr: 'max by (area) (wa_router_forward_oldest_seconds)', legend: '{{area}} oldest (s)' }] },
        { title: 'Area circuit', unit: 'short', description: '0 closed, 1 half-open, 2 open (deliveries wait).', queries: [{ expr: 'max by (area) (wa_router_forward_circuit)', legend: '{{area}}' }] },
      ],
    },
  ];
}

/**
 * Every series selector of `expr` limited to the namespaces picked in the dashboard's `namespace`
 * variable: one Prometheus often scrapes several installs, whose figures must not add up.
 */
export function inNamespaces(expr: string): string {
  return expr.replace(/\b(wa_router_[a-z0-9_]+|up)\b(?:\{([^}]*)\})?(?!\s*\()/g, (_m, name: string, labels: string | undefined) =>
    `${name}{namespace=~"$namespace"${labels ? `, ${labels}` : ''}}`);
}

/**
 * The dashboard as Grafana's JSON model (schemaVersion 39), with a Prometheus data source variable
 * and a namespace variable. Its uid names the preset, not the namespace: one imported copy serves
 * every install of the preset a Prometheus scrapes, the namespace picked at the top.
 */
export function grafanaDashboard(preset: Preset): Record<string, unknown> {
  const panels: Record<string, unknown>[] = [];
  let id = 1;
  let y = 0;
  for (const row of dashboardRows(preset)) {
    panels.push({ id: id++, type: 'row', title: row.title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] });
    y += 1;
    row.panels.forEach((p, i) => {
      panels.push({
        id: id++,
        type: 'timeseries',
        title: p.title,
        description: p.description,
        datasource: { type: 'prometheus', uid: '${datasource}' },
        gridPos: { h: 8, w: 8, x: (i % 3) * 8, y: y + Math.floor(i / 3) * 8 },
        fieldConfig: {
          defaults: {
            unit: p.unit,
            ...(p.threshold !== undefined ? {
              custom: { thresholdsStyle: { mode: 'line' } },
              thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }, { color: 'red', value: p.threshold }] },
            } : {}),
          },
          overrides: [],
        },
        targets: p.queries.map((q, j) => ({ refId: String.fromCharCode(65 + j), expr: inNamespaces(q.expr), legendFormat: q.legend, datasource: { type: 'prometheus', uid: '${datasource}' } })),
      });
    });
    y += Math.ceil(row.panels.length / 3) * 8;
  }
  return {
    uid: `wa-router-${preset.name}`,
    title: `wa-router (${preset.name})`,
    tags: ['wa-router'],
    timezone: 'browser',
    schemaVersion: 39,
    refresh: '30s',
    time: { from: 'now-6h', to: 'now' },
    templating: {
      list: [
        { name: 'datasource', type: 'datasource', query: 'prometheus', label: 'Prometheus' },
        {
          name: 'namespace',
          label: 'Namespace',
          type: 'query',
          datasource: { type: 'prometheus', uid: '${datasource}' },
          definition: NAMESPACES_QUERY,
          query: { query: NAMESPACES_QUERY, refId: 'namespaces' },
          refresh: 2,
          multi: true,
          includeAll: true,
          allValue: '.+',
          sort: 1,
        },
      ],
    },
    panels,
  };
}
