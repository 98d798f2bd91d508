// Deliveries as the API shows them: each event with its attempts; dead-letters replayable.
import type { Pool } from '../../store/pool.js';
import type { DeliveryResult } from './http-client.js';

export interface DeliveryView {
  id: number;
  webhookId: string;
  type: string;
  conversationId: number | null;
  status: string;
  attempts: { at: string; statusCode: number | null; latencyMs: number; error: string | null; response: string | null }[];
  nextAttemptAt: string | null;
  lastStatusCode: number | null;
  lastError: string | null;
  createdAt: string;
  finishedAt: string | null;
}

export async function listDeliveries(pool: Pool, areaId: number, q: { status?: string | undefined; limit: number; before?: number | undefined }): Promise<{ data: DeliveryView[]; nextCursor: string | null }> {
  const { rows } = await pool.query<{
    id: number; webhook_id: string; type: string; conversation_id: number | null; status: string; next_attempt_at: Date; last_status: number | null; last_error: string | null; created_at: Date; finished_at: Date | null;
    attempts: DeliveryView['attempts'] | null;
  }>(
    `SELECT e.*, (SELECT json_agg(json_build_object('at', a.attempted_at, 'statusCode', a.status_code, 'latencyMs', a.latency_ms, 'error', a.error, 'response', a.response) ORDER BY a.id)
                  FROM forward_attempts a WHERE a.event_id = e.id) AS attempts
     FROM forward_events e
     WHERE e.area_id = $1 AND ($2::text IS NULL OR e.status = $2) AND ($3::bigint IS NULL OR e.id < $3)
     ORDER BY e.id DESC LIMIT $4`,
    [areaId, q.status ?? null, q.before ?? null, q.limit],
  );
  const data = rows.map((r) => ({
    id: r.id,
    webhookId: r.webhook_id,
    type: r.type,
    conversationId: r.conversation_id,
    status: r.status,
    attempts: r.attempts ?? [],
    nextAttemptAt: r.status === 'pending' ? r.next_attempt_at.toISOString() : null,
    lastStatusCode: r.last_status,
    lastError: r.last_error,
    createdAt: r.created_at.toISOString(),
    finishedAt: r.finished_at?.toISOString() ?? null,
  }));
  return { data, nextCursor: rows.length === q.limit ? String(rows[rows.length - 1]!.id) : null };
}

/** A dead-lettered delivery goes back to the head of its conversation's queue, same webhook-id. */
export async function replayDelivery(pool: Pool, areaId: number, id: number): Promise<{ id: number; webhookId: string; status: string } | null> {
  const { rows } = await pool.query<{ id: number; webhook_id: string }>(
    `UPDATE forward_events SET status = 'pending', attempts = 0, next_attempt_at = now(), locked_until = NULL, finished_at = NULL
     WHERE id = $1 AND area_id = $2 AND status = 'dead' RETURNING id, webhook_id`,
    [id, areaId],
  );
  return rows[0] ? { id: rows[0].id, webhookId: rows[0].webhook_id, status: 'pending' } : null;
}

/** A ping is delivered at once by the API, then kept with its attempt like any delivery (unless its area was deleted meanwhile). */
export async function recordPing(pool: Pool, areaId: number, webhookId: string, body: string, ok: boolean, r: DeliveryResult): Promise<void> {
  await pool.query(
    `WITH e AS (
       INSERT INTO forward_events (webhook_id, area_id, type, body, status, attempts, last_status, last_error, finished_at)
       SELECT $1::text, a.id, 'ping', $3::text, $4::text, 1, $5::int, $6::text, now() FROM areas a WHERE a.id = $2 FOR KEY SHARE OF a RETURNING id)
     INSERT INTO forward_attempts (event_id, area_id, status_code, latency_ms, error, response)
     SELECT id, $2, $5, $7, $6, $8 FROM e`,
    [webhookId, areaId, body, ok ? 'succeeded' : 'dead', r.statusCode, r.error ?? (ok ? null : `HTTP ${r.statusCode}`), r.latencyMs, r.response],
  );
}
