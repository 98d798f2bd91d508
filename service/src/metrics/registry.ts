// One prom-client registry for the process; every metric is defined here.
import client from 'prom-client';

export type Registry = client.Registry;

export function createMetrics() {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'wa_router_process_' });

  const webhook = {
    requests: new client.Counter({ name: 'wa_router_webhook_requests_total', help: 'Webhook requests by outcome', labelNames: ['outcome'] as const, registers: [registry] }),
    duration: new client.Histogram({
      name: 'wa_router_webhook_duration_seconds',
      help: 'Webhook handling time, from first byte to answer, by outcome',
      labelNames: ['outcome'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    localAcks: new client.Counter({
      name: 'wa_router_ack_local_fallback_total',
      help: 'Webhook bodies acked on the Redis master alone (ACK_REPLICA_FALLBACK=local) because fewer than ACK_REPLICAS replicas were online',
      registers: [registry],
    }),
    enqueueFailures: new client.Counter({ name: 'wa_router_enqueue_failures_total', help: 'Webhook bodies that could not be durably enqueued (answered 503)', registers: [registry] }),
    enqueueRejections: new client.Counter({
      name: 'wa_router_enqueue_rejections_total',
      help: 'Webhooks answered 503 because Redis did not confirm within ENQUEUE_TIMEOUT_MS (timeout) or INGEST_MAX_PENDING_BYTES were already waiting (overloaded)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    batchSize: new client.Histogram({
      name: 'wa_router_ingest_batch_events',
      help: 'Webhook bodies coalesced into one enqueue',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
      registers: [registry],
    }),
  };

  const jobs = {
    processed: new client.Counter({ name: 'wa_router_jobs_total', help: 'Jobs finished by queue and result (completed, failed, retried, delayed)', labelNames: ['queue', 'result'] as const, registers: [registry] }),
    duration: new client.Histogram({
      name: 'wa_router_job_duration_seconds',
      help: 'Job processing time by queue',
      labelNames: ['queue'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
  };

  const inbound = {
    messagesStored: new client.Counter({ name: 'wa_router_inbound_messages_stored_total', help: 'Inbound messages inserted (duplicates not counted)', registers: [registry] }),
    statusesStored: new client.Counter({ name: 'wa_router_statuses_stored_total', help: 'Message statuses recorded (duplicates not counted)', registers: [registry] }),
    duplicateEvents: new client.Counter({ name: 'wa_router_duplicate_events_total', help: 'Webhook bodies seen before (Meta redeliveries, job retries)', registers: [registry] }),
    unroutedEvents: new client.Counter({ name: 'wa_router_unrouted_events_total', help: 'Webhook bodies for a phone_number_id no channel serves (kept, not routed)', registers: [registry] }),
    isolatedEvents: new client.Counter({ name: 'wa_router_isolated_events_total', help: 'Webhook bodies split out of their batch after a failure', registers: [registry] }),
    transientDelays: new client.Counter({ name: 'wa_router_transient_delays_total', help: 'Jobs delayed because the database was unavailable', registers: [registry] }),
    repairedStrings: new client.Counter({ name: 'wa_router_unstorable_strings_repaired_total', help: 'Webhook strings Postgres cannot hold (NUL, lone surrogates) made storable before storing', registers: [registry] }),
  };

  const outbound = {
    sent: new client.Counter({ name: 'wa_router_outbound_sends_total', help: 'Graph API send attempts by result (accepted, unknown, retry, throttle, permanent, pause_channel)', labelNames: ['result'] as const, registers: [registry] }),
    graphDuration: new client.Histogram({
      name: 'wa_router_graph_request_duration_seconds',
      help: 'Graph API send latency by outcome (ok or the error code)',
      labelNames: ['outcome'] as const,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
      registers: [registry],
    }),
    circuitWaits: new client.Counter({ name: 'wa_router_circuit_waits_total', help: 'Sends postponed because the channel circuit was open', registers: [registry] }),
    unknownOutcome: new client.Counter({ name: 'wa_router_outbound_unknown_outcome_total', help: 'Graph API sends whose outcome is unknown (timeout or reset after the request was written); not repeated before the grace', registers: [registry] }),
    exhausted: new client.Counter({ name: 'wa_router_outbound_exhausted_total', help: 'Sends whose retries ran out (or that stalled too often), marked failed', registers: [registry] }),
  };

  const history = {
    chunks: new client.Counter({ name: 'wa_router_history_chunks_total', help: 'Coexistence history chunk deliveries by result (applied, followup, repeated, failed)', labelNames: ['result'] as const, registers: [registry] }),
    mediaFilled: new client.Counter({ name: 'wa_router_history_media_filled_total', help: 'History media placeholders that got their media id from a later history webhook', registers: [registry] }),
    messages: new client.Counter({ name: 'wa_router_history_messages_stored_total', help: 'History messages inserted (already known ones not counted)', registers: [registry] }),
    echoes: new client.Counter({ name: 'wa_router_echo_messages_stored_total', help: 'Messages the business sent from the WhatsApp Business app (smb_message_echoes) stored', registers: [registry] }),
    stateSync: new client.Counter({ name: 'wa_router_app_state_sync_contacts_total', help: 'Contact changes from the Business app (smb_app_state_sync) applied', registers: [registry] }),
    chunkSeconds: new client.Histogram({ name: 'wa_router_history_chunk_duration_seconds', help: 'Time to apply one history chunk', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10], registers: [registry] }),
    repairedStrings: inbound.repairedStrings,
  };

  // The label values that mean trouble start at 0: an alert's or a panel's selector for them (the
  // 5xx ratio, the Pacing panel's throttle) finds a series before the first one happens, and a
  // misspelt value in a query shows as missing data in the monitoring tests.
  for (const outcome of ['accepted', 'unavailable', 'timeout', 'overloaded']) webhook.requests.inc({ outcome }, 0);
  for (const reason of ['timeout', 'overloaded']) webhook.enqueueRejections.inc({ reason }, 0);
  for (const result of ['accepted', 'unknown', 'retry', 'throttle', 'permanent', 'pause_channel']) outbound.sent.inc({ result }, 0);
  return { registry, webhook, jobs, inbound, outbound, history };
}

export type Metrics = ReturnType<typeof createMetrics>;
export type InboundMetrics = Metrics['inbound'];

/** Registers a gauge whose value is read at scrape time. */
export function scrapeGauge<L extends string>(
  registry: client.Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  collect: (set: (labels: Record<L, string>, value: number) => void) => Promise<void> | void,
): void {
  new client.Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    async collect() {
      this.reset();
      try {
        await collect((labels, value) => this.set(labels as never, value));
      } catch {
        // A scrape while Redis or Postgres is down still answers, without this gauge's values.
      }
    },
  });
}
export type HistoryMetrics = Metrics['history'];
