// Outbound messages: written 'pending' with an outbox row in one transaction before
// anything is sent, then claimed, marked accepted (wamid) or failed by the sender.
import type { GraphError } from '../whatsapp/errors.js';
import { applyStatuses, REOPEN_SENDER_FAILED, type StatusChange } from './inbound-store.js';
import { withTransaction, type Pool } from './pool.js';

export interface NewOutbound {
  readonly channelId: number;
  /** The contact key: a phone number, or a business-scoped user id (`toUserId`) when no number is known. */
  readonly to: string;
  readonly toUserId?: boolean;
  readonly type: string;
  readonly body: string | null;
  readonly replyToWamid: string | null;
  /** The Graph API request body, sent as is. */
  readonly payload: Record<string, unknown>;
  /** A key is unique within its scope (the caller); the fingerprint tells a retry from another request. */
  readonly idempotency: { readonly scope: string; readonly key: string; readonly fingerprint: Buffer } | null;
}

export interface OutboundRef {
  readonly id: number;
  readonly channelId: number;
  readonly conversationId: number;
  readonly created: boolean;
  /** False when an earlier message holds the Idempotency-Key of a different request. */
  readonly sameRequest: boolean;
}

async function priorWithKey(pool: Pool, k: NonNullable<NewOutbound['idempotency']>): Promise<OutboundRef | null> {
  const { rows } = await pool.query<{ id: number; channel_id: number; conversation_id: number; idempotency_fingerprint: Buffer }>(
    'SELECT id, channel_id, conversation_id, idempotency_fingerprint FROM messages WHERE idempotency_scope = $1 AND idempotency_key = $2',
    [k.scope, k.key],
  );
  const r = rows[0];
  return r ? { id: r.id, channelId: r.channel_id, conversationId: r.conversation_id, created: false, sameRequest: r.idempotency_fingerprint.equals(k.fingerprint) } : null;
}

/**
 * Persist first: the message, its outbox row, its contact and conversation go in one
 * statement, so they commit together or not at all (and in one round trip). The message
 * id is drawn first so the conversation row is written once, already pointing at it: a
 * second change to the same row in another CTE would be silently dropped (one snapshot).
 */
export async function createOutbound(pool: Pool, m: NewOutbound): Promise<OutboundRef> {
  // A replay is answered before anything is written (a different request's recipient would
  // otherwise get a conversation for nothing); the insert's conflict catches concurrent ones.
  const known = m.idempotency && (await priorWithKey(pool, m.idempotency));
  if (known) return known;
  const { rows } = await pool.query<{ id: number | null; channel_id: number; conversation_id: number; planned_id: number }>(
    `WITH mid AS (SELECT nextval(pg_get_serial_sequence('messages', 'id')) AS id, now() AS at),
     ct AS (
       INSERT INTO contacts (wa_id, user_id) VALUES ($2, CASE WHEN $8 THEN $2 END)
       ON CONFLICT (wa_id) DO UPDATE SET updated_at = contacts.updated_at RETURNING id),
     cv AS (
       INSERT INTO conversations (channel_id, contact_id, last_message_id, last_message_at, last_agent_message_id)
       SELECT $1, ct.id, mid.id, mid.at, mid.id FROM ct, mid
       ON CONFLICT (channel_id, contact_id) DO UPDATE SET
         last_message_id = EXCLUDED.last_message_id, last_message_at = EXCLUDED.last_message_at,
         last_agent_message_id = EXCLUDED.last_agent_message_id, updated_at = now()
       RETURNING id, contact_id),
     ins AS (
       INSERT INTO messages (id, channel_id, conversation_id, contact_id, direction, source, type, body, reply_to_wamid, raw, wa_timestamp, status, status_rank, idempotency_key, idempotency_scope, idempotency_fingerprint)
       OVERRIDING SYSTEM VALUE
       SELECT mid.id, $1, cv.id, cv.contact_id, 'outbound', 'api', $3, $4, $5, $6::jsonb, mid.at, 'pending', 0, $7, $9, $10 FROM cv, mid
       ON CONFLICT (idempotency_scope, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
       RETURNING id, channel_id, conversation_id),
     ob AS (INSERT INTO outbox (message_id, channel_id) SELECT id, channel_id FROM ins)
     SELECT ins.id, $1::bigint AS channel_id, cv.id AS conversation_id, mid.id AS planned_id
     FROM cv CROSS JOIN mid LEFT JOIN ins ON true`,
    [m.channelId, m.to, m.type, m.body, m.replyToWamid, JSON.stringify(m.payload), m.idempotency?.key ?? null, m.toUserId === true, m.idempotency?.scope ?? null, m.idempotency?.fingerprint ?? null],
  );
  const r = rows[0]!;
  if (r.id !== null) return { id: r.id, channelId: r.channel_id, conversationId: r.conversation_id, created: true, sameRequest: true };
  // The Idempotency-Key was used before (possibly by a request still in flight a moment
  // ago): the conversation must not point at the message that was not created.
  await pool.query(
    `UPDATE conversations c SET last_message_id = l.id, last_message_at = l.wa_timestamp, last_agent_message_id = a.id
     FROM (SELECT 1) one
     LEFT JOIN LATERAL (SELECT id, wa_timestamp FROM messages WHERE conversation_id = $1 ORDER BY wa_timestamp DESC, id DESC LIMIT 1) l ON true
     LEFT JOIN LATERAL (SELECT id FROM messages WHERE conversation_id = $1 AND direction = 'outbound' ORDER BY id DESC LIMIT 1) a ON true
     WHERE c.id = $1 AND (c.last_message_id = $2 OR c.last_agent_message_id = $2)`,
    [r.conversation_id, r.planned_id],
  );
  return (await priorWithKey(pool, m.idempotency!))!;
}

/**
 * Deletes the outbox rows of messages already enqueued, gathered for a moment so a burst
 * of sends costs one statement, not one per message. Rows it never gets to (a crash)
 * are re-enqueued by the relay, which is a no-op for a job that exists.
 */
export class OutboxCleaner {
  private ids: number[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pool: Pool,
    private readonly onError: (err: Error) => void,
    private readonly delayMs = 100,
  ) {}

  done(messageId: number): void {
    this.ids.push(messageId);
    if (this.ids.length >= 500) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.delayMs);
  }

  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const ids = this.ids;
    this.ids = [];
    if (ids.length === 0) return;
    await this.pool.query('DELETE FROM outbox WHERE message_id = ANY($1::bigint[])', [ids]).catch(this.onError);
  }
}

/**
 * Outbox rows older than `minAgeMs` (the web's own enqueue had time to happen), locked so
 * relays in several workers never take the same rows; `handle` enqueues, then they go.
 */
export async function relayOutbox(pool: Pool, minAgeMs: number, limit: number, handle: (rows: { messageId: number; channelId: number; to: string }[]) => Promise<void>): Promise<number> {
  return withTransaction(pool, async (client) => {
    const { rows } = await client.query<{ id: number; message_id: number; channel_id: number; wa_id: string }>(
      `SELECT o.id, o.message_id, o.channel_id, c.wa_id FROM outbox o
       JOIN messages m ON m.id = o.message_id JOIN contacts c ON c.id = m.contact_id
       WHERE o.created_at < now() - make_interval(secs => $1::double precision / 1000)
       ORDER BY o.id LIMIT $2 FOR UPDATE OF o SKIP LOCKED`,
      [minAgeMs, limit],
    );
    if (rows.length === 0) return 0;
    await handle(rows.map((r) => ({ messageId: r.message_id, channelId: r.channel_id, to: r.wa_id })));
    await client.query('DELETE FROM outbox WHERE id = ANY($1::bigint[])', [rows.map((r) => r.id)]);
    return rows.length;
  });
}

export type SendCheck =
  | { readonly send: true; readonly payload: Record<string, unknown> }
  /** Done already (sent, failed) or gone: nothing to do. */
  | { readonly send: false; readonly reason: 'not_pending' }
  /** An older message of the conversation has to leave first. */
  | { readonly send: false; readonly reason: 'earlier_pending' };

/**
 * Whether the message still has to be sent (outbound, pending, no wamid: a wamid means
 * Meta has it) and it is its turn in the conversation, in one query.
 */
export async function checkForSend(pool: Pool, id: number): Promise<SendCheck> {
  const { rows } = await pool.query<{ raw: Record<string, unknown>; earlier: boolean }>(
    `SELECT m.raw, EXISTS (
       SELECT 1 FROM messages e WHERE e.conversation_id = m.conversation_id AND e.id < m.id
         AND e.direction = 'outbound' AND e.wamid IS NULL AND e.status = 'pending') AS earlier
     FROM messages m WHERE m.id = $1 AND m.direction = 'outbound' AND m.wamid IS NULL AND m.status = 'pending'`,
    [id],
  );
  const r = rows[0];
  if (!r) return { send: false, reason: 'not_pending' };
  if (r.earlier) return { send: false, reason: 'earlier_pending' };
  return { send: true, payload: r.raw };
}

/**
 * Meta accepted it: keep the wamid (reopening the message if the sender had given up on it),
 * then apply any status that arrived before it. Returns the status changes that statuses
 * already received made (reported before the answer).
 */
export async function markAccepted(pool: Pool, id: number, wamid: string): Promise<{ conversationId: number | null; changes: StatusChange[] }> {
  // The conversation never changes, so the statement's snapshot from before the update shows it.
  const { rows } = await pool.query<{ conversation_id: number }>(
    `WITH u AS (UPDATE messages m SET wamid = $2, ${REOPEN_SENDER_FAILED} WHERE m.id = $1 AND (m.wamid IS NULL OR m.wamid = $2))
     SELECT conversation_id FROM messages WHERE id = $1`,
    [id, wamid],
  );
  // A new statement (new snapshot) sees statuses committed while we were sending.
  return { conversationId: rows[0]?.conversation_id ?? null, changes: await applyStatuses(pool, [wamid]) };
}

/** The failed message's conversation, or null when it was failed already (or Meta has it). */
export async function markFailed(pool: Pool, id: number, e: GraphError, hint?: string): Promise<{ conversationId: number } | null> {
  const { rows } = await pool.query<{ conversation_id: number }>(
    `UPDATE messages SET status = 'failed', status_rank = 9, failed_at = now(), error_code = $2, error_title = $3, error_details = $4, updated_at = now()
     WHERE id = $1 AND status <> 'failed' AND wamid IS NULL RETURNING conversation_id`,
    [id, e.code, e.title, [e.details, hint].filter(Boolean).join(' — ') || null],
  );
  return rows[0] ? { conversationId: rows[0].conversation_id } : null;
}

/** A replayed dead letter: the failed message is pending again (never one Meta has). */
export async function reopenFailed(pool: Pool, id: number): Promise<{ conversationId: number; channelId: number } | null> {
  const { rows } = await pool.query<{ conversation_id: number; channel_id: number }>(
    `UPDATE messages SET status = 'pending', status_rank = 0, failed_at = NULL, error_code = NULL, error_title = NULL, error_details = NULL, updated_at = now()
     WHERE id = $1 AND direction = 'outbound' AND wamid IS NULL AND status = 'failed'
     RETURNING conversation_id, channel_id`,
    [id],
  );
  return rows[0] ? { conversationId: rows[0].conversation_id, channelId: rows[0].channel_id } : null;
}

export interface ChannelForSend {
  readonly id: number;
  readonly phoneNumberId: string;
  readonly accessToken: string | null;
  readonly messagesPerSecond: number;
  readonly pausedReason: string | null;
}

export async function loadChannels(pool: Pool): Promise<ChannelForSend[]> {
  const { rows } = await pool.query<{ id: number; phone_number_id: string; access_token: string | null; messages_per_second: number; paused_reason: string | null }>(
    'SELECT id, phone_number_id, access_token, messages_per_second, paused_reason FROM channels ORDER BY id',
  );
  return rows.map((r) => ({ id: r.id, phoneNumberId: r.phone_number_id, accessToken: r.access_token, messagesPerSecond: r.messages_per_second, pausedReason: r.paused_reason }));
}

export async function pauseChannel(pool: Pool, channelId: number, reason: string): Promise<void> {
  await pool.query('UPDATE channels SET paused_reason = $2, updated_at = now() WHERE id = $1', [channelId, reason]);
}
