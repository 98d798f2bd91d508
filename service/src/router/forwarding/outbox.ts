// The forwarding outbox in Postgres: one ordered queue per conversation and area. A worker
// claims the head event of each queue with a lease (FOR UPDATE SKIP LOCKED, so workers never
// take the same one); a later event of that queue stays invisible until the head is done. An
// area that is disabled or failing holds only its own queue, never the conversation's events
// for the area it was reassigned to.
import type { Pool } from '../../store/pool.js';
import { findMessagesForForwarding } from './payload.js';

export interface ClaimedEvent {
  readonly id: number;
  readonly webhookId: string;
  readonly areaId: number;
  readonly conversationId: number | null;
  readonly type: string;
  readonly messageId: number | null;
  readonly data: Record<string, unknown> | null;
  readonly body: string | null;
  readonly attempts: number;
  readonly createdAt: Date;
}

type ClaimRow = { id: number; webhook_id: string; area_id: number; conversation_id: number | null; type: string; message_id: number | null; data: Record<string, unknown> | null; body: string | null; attempts: number; created_at: Date };

/**
 * Claims due head events. An event is a head when no pending event of its conversation and area sorts
 * before it (see forward_events.sort_at); it becomes claimable `settleMs` after it was
 * stored, so an earlier message stored a moment later by another worker still goes first.
 */
export async function claimDue(pool: Pool, limit: number, leaseMs: number, skipAreas: readonly number[], settleMs: number): Promise<ClaimedEvent[]> {
  const { rows } = await pool.query<ClaimRow>(
    `UPDATE forward_events e SET locked_until = now() + make_interval(secs => $2::float8 / 1000)
     FROM (
       SELECT f.id FROM forward_events f
       JOIN areas a ON a.id = f.area_id AND a.disabled_at IS NULL
       WHERE f.status = 'pending' AND f.next_attempt_at <= now()
         AND (f.locked_until IS NULL OR f.locked_until < now())
         AND f.created_at <= now() - make_interval(secs => $4::float8 / 1000)
         AND NOT (f.area_id = ANY ($3::bigint[]))
         AND (f.conversation_id IS NULL OR NOT EXISTS (
           SELECT 1 FROM forward_events p WHERE p.conversation_id = f.conversation_id AND p.area_id = f.area_id AND p.status = 'pending' AND (p.sort_at, p.sort_seq, p.id) < (f.sort_at, f.sort_seq, f.id)))
       ORDER BY f.next_attempt_at, f.id
       LIMIT $1
       FOR UPDATE OF f SKIP LOCKED) c
     WHERE e.id = c.id
     RETURNING e.id, e.webhook_id, e.area_id, e.conversation_id, e.type, e.message_id, e.data, e.body, e.attempts, e.created_at`,
    [limit, leaseMs, skipAreas, settleMs],
  );
  return rows.map((r) => ({ id: r.id, webhookId: r.webhook_id, areaId: r.area_id, conversationId: r.conversation_id, type: r.type, messageId: r.message_id, data: r.data, body: r.body, attempts: r.attempts, createdAt: r.created_at }));
}

/** Gives claimed events back untouched (a worker took more than an area may have in flight). */
export async function release(pool: Pool, ids: readonly number[]): Promise<void> {
  if (ids.length > 0) await pool.query('UPDATE forward_events SET locked_until = NULL WHERE id = ANY ($1::bigint[])', [ids]);
}

/** The body each event is signed with: built once, at the first attempt, then kept. */
export async function bodiesFor(pool: Pool, events: readonly ClaimedEvent[]): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  const need = events.filter((e) => e.body === null);
  const messages = await findMessagesForForwarding(pool, need.flatMap((e) => (e.messageId !== null ? [e.messageId] : [])));
  for (const e of events) {
    if (e.body !== null) {
      out.set(e.id, e.body);
      continue;
    }
    const message = e.messageId !== null ? messages.get(e.messageId) : undefined;
    const data: Record<string, unknown> = { ...(e.data ?? {}) };
    if (message) {
      data.conversationId = message.conversationId;
      data.channelId = message.channelId;
      data.contact = message.contact;
      data.message = message;
    }
    data.areaId = e.areaId;
    out.set(e.id, JSON.stringify({ type: e.type, timestamp: e.createdAt.toISOString(), data: orderData(data) }));
  }
  return out;
}

// The documented fields first, in the documented order: receivers reading the raw body see it as in the README.
function orderData(d: Record<string, unknown>): Record<string, unknown> {
  const { conversationId, channelId, areaId, contact, message, ...rest } = d;
  return { conversationId: conversationId ?? null, channelId: channelId ?? null, areaId, contact: contact ?? null, ...(message !== undefined ? { message } : {}), ...rest };
}

export interface Outcome {
  readonly id: number;
  readonly areaId: number;
  readonly body: string;
  /** 'pending' (retry at nextAttemptAt), 'succeeded' or 'dead'. */
  readonly status: 'pending' | 'succeeded' | 'dead';
  readonly nextAttemptAt: Date;
  readonly statusCode: number | null;
  readonly latencyMs: number;
  readonly error: string | null;
  readonly response: string | null;
}

/**
 * Records a batch of attempts and their events' new state in one statement. An event can be in a
 * batch twice (its lease ran out while its first outcome waited, and it was delivered again): an
 * UPDATE changes a row once however many source rows join it, so the batch is folded to each
 * event's last outcome, counting all of its attempts.
 */
export async function recordOutcomes(pool: Pool, outcomes: readonly Outcome[]): Promise<void> {
  if (outcomes.length === 0) return;
  const col = <T>(f: (o: Outcome) => T) => outcomes.map(f);
  await pool.query(
    `WITH r AS (
       SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::int[], $7::int[], $8::text[], $9::text[])
         WITH ORDINALITY AS r(id, area_id, body, status, next_at, code, latency, error, response, n)),
     att AS (
       INSERT INTO forward_attempts (event_id, area_id, status_code, latency_ms, error, response)
       SELECT id, area_id, code, latency, error, response FROM r ORDER BY n),
     last AS (
       SELECT DISTINCT ON (id) id, body, status, next_at, code, error, count(*) OVER (PARTITION BY id) AS tries
       FROM r ORDER BY id, n DESC)
     UPDATE forward_events e SET
       status = last.status, attempts = e.attempts + last.tries, next_attempt_at = last.next_at, locked_until = NULL,
       last_status = last.code, last_error = last.error, body = COALESCE(e.body, last.body),
       finished_at = CASE WHEN last.status = 'pending' THEN NULL ELSE now() END
     FROM last WHERE e.id = last.id`,
    [col((o) => o.id), col((o) => o.areaId), col((o) => o.body), col((o) => o.status), col((o) => o.nextAttemptAt.toISOString()), col((o) => o.statusCode), col((o) => o.latencyMs), col((o) => o.error), col((o) => o.response)],
  );
}

export async function disableArea(pool: Pool, areaId: number, reason: string): Promise<void> {
  await pool.query('UPDATE areas SET disabled_at = COALESCE(disabled_at, now()), disabled_reason = COALESCE(disabled_reason, $2), updated_at = now() WHERE id = $1', [areaId, reason]);
}

/**
 * Backlog per area: pending events and the age of the oldest, for the gauges. Every area has a row
 * (0 when nothing waits), so a dashboard shows a caught-up area as 0, not as missing.
 */
export async function backlog(pool: Pool): Promise<{ areaId: number; pending: number; oldestSeconds: number }[]> {
  const { rows } = await pool.query<{ area_id: number; pending: number; oldest: number }>(
    `SELECT a.id AS area_id, count(e.area_id)::int AS pending, coalesce(extract(epoch FROM now() - min(e.created_at)), 0)::float8 AS oldest
     FROM areas a LEFT JOIN forward_events e ON e.area_id = a.id AND e.status = 'pending' GROUP BY a.id`,
  );
  return rows.map((r) => ({ areaId: r.area_id, pending: r.pending, oldestSeconds: r.oldest }));
}
