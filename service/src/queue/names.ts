// Queue names and job payloads: the only shapes that cross Redis.

export const QUEUES = {
  /** Verified webhook bodies, coalesced per event-loop tick by the web process. */
  inbound: 'inbound',
  /** Coexistence history chunks: their own queue, so a 50k-message import never delays live webhooks. */
  history: 'history',
} as const;

export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

export const JOBS = {
  /** Several webhook bodies acked together. */
  webhookBatch: 'webhook-batch',
  /** One webhook body, split out of a batch because it failed there. */
  webhookEvent: 'webhook-event',
  /** Stores the events kept unrouted that a channel now serves (no events of its own). */
  replayUnrouted: 'replay-unrouted',
} as const;

export interface RawWebhookEvent {
  /** The body exactly as received, as UTF-8 text. */
  readonly body: string;
  /** Epoch milliseconds when the web process received it. */
  readonly receivedAt: number;
}

export interface InboundJobData {
  readonly events: RawWebhookEvent[];
  /** Set on dead-letter replays and isolated retries: store rows even if the event was seen. */
  readonly force?: boolean;
  /** Why this event was split out of its batch. */
  readonly isolatedBecause?: string;
  /** A replay-unrouted job: one number's events, or (null) those of every number served now. */
  readonly replayFor?: string | null;
}

export interface HistoryChunkJobData {
  readonly channelId: number;
  /** The `history` change value holding exactly one chunk, as Meta sent it. */
  readonly value: unknown;
}

/** A history queue job: raw history webhooks from the web process, or one chunk of one of them. */
export type HistoryJobData = HistoryChunkJobData | InboundJobData;
