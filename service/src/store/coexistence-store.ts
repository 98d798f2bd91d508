// Set-based writes for coexistence: a history chunk is a handful of statements whatever its size
// (contacts, conversations and messages in bulk, conversations touched once), applied exactly
// once per (channel, phase, chunk_order) in one transaction, so a crash mid-chunk leaves nothing
// half-done and a repeated chunk is a no-op.
import type { EchoRow, HistoryChunk, StateSyncRow } from '../sync/coexistence.js';
import { statusRank } from '../whatsapp/statuses.js';
import type { InboundMessage } from '../whatsapp/parse.js';
import { withTransaction, type Pool, type PoolClient } from './pool.js';

export interface ChunkResult {
  /** False when this chunk had been applied before (a repeat). */
  readonly applied: boolean;
  readonly messages: number;
  /** Rows really inserted (messages already known by wamid are skipped). */
  readonly inserted: number;
  readonly conversations: number;
}

/** The message columns both history and echoes write, as one JSON row for json_to_recordset. */
function messageRow(m: InboundMessage, waId: string, direction: 'inbound' | 'outbound', status: string) {
  return {
    wa_id: waId, wamid: m.wamid, direction, type: m.type, body: m.body,
    media_id: m.mediaId, media_mime_type: m.mediaMimeType, media_sha256: m.mediaSha256, media_filename: m.mediaFilename,
    latitude: m.latitude, longitude: m.longitude, reply_to_wamid: m.replyToWamid, reaction_to_wamid: m.reactionToWamid,
    reaction_emoji: m.reactionEmoji, interactive_reply_id: m.interactiveReplyId, forwarded: m.forwarded, referral: m.referral,
    raw: m.raw, wa_timestamp: m.timestamp.toISOString(), status, status_rank: Math.max(0, statusRank(status)),
  };
}

const RECORD = `r(wa_id text, wamid text, direction text, type text, body text, media_id text, media_mime_type text,
  media_sha256 text, media_filename text, latitude double precision, longitude double precision, reply_to_wamid text,
  reaction_to_wamid text, reaction_emoji text, interactive_reply_id text, forwarded boolean, referral jsonb, raw jsonb,
  wa_timestamp timestamptz, status text, status_rank smallint)`;

/** Contacts and conversations for these customers, created when missing; no unread, no activity. */
async function ensureConversations(client: PoolClient, channelId: number, waIds: string[]): Promise<void> {
  const ids = [...new Set(waIds)].sort();
  await client.query('INSERT INTO contacts (wa_id) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT (wa_id) DO NOTHING', [ids]);
  await client.query(
    `INSERT INTO conversations (channel_id, contact_id)
     SELECT $1, id FROM contacts WHERE wa_id = ANY($2::text[]) ORDER BY id
     ON CONFLICT (channel_id, contact_id) DO NOTHING`,
    [channelId, ids],
  );
}

/**
 * Inserts messages (source history or echo) and moves each touched conversation's last message
 * forward once. Never touches unread counts: nobody has to read what the app already showed.
 */
async function insertMessages(client: PoolClient, channelId: number, source: 'history' | 'echo', rows: ReturnType<typeof messageRow>[]): Promise<{ inserted: number; conversations: number }> {
  if (rows.length === 0) return { inserted: 0, conversations: 0 };
  const { rows: out } = await client.query<{ inserted: number; conversations: number }>(
    `WITH r AS (SELECT * FROM json_to_recordset($2::json) AS ${RECORD}),
     ins AS (
       INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, source, type, body,
         media_id, media_mime_type, media_sha256, media_filename, latitude, longitude, reply_to_wamid,
         reaction_to_wamid, reaction_emoji, interactive_reply_id, forwarded, referral, raw, wa_timestamp, status, status_rank)
       SELECT r.wamid, $1, cv.id, ct.id, r.direction, $3, r.type, r.body,
         r.media_id, r.media_mime_type, r.media_sha256, r.media_filename, r.latitude, r.longitude, r.reply_to_wamid,
         r.reaction_to_wamid, r.reaction_emoji, r.interactive_reply_id, COALESCE(r.forwarded, false), r.referral, r.raw, r.wa_timestamp, r.status, r.status_rank
       FROM r JOIN contacts ct ON ct.wa_id = r.wa_id
              JOIN conversations cv ON cv.channel_id = $1 AND cv.contact_id = ct.id
       ON CONFLICT (wamid) DO NOTHING
       RETURNING id, conversation_id, wa_timestamp, direction),
     agg AS (
       SELECT DISTINCT ON (conversation_id) conversation_id, id AS last_id, wa_timestamp AS last_at,
              max(wa_timestamp) FILTER (WHERE direction = 'inbound') OVER (PARTITION BY conversation_id) AS last_in
       FROM ins ORDER BY conversation_id, wa_timestamp DESC, id DESC),
     upd AS (
       UPDATE conversations c SET
         last_message_id = CASE WHEN c.last_message_at IS NULL OR agg.last_at >= c.last_message_at THEN agg.last_id ELSE c.last_message_id END,
         last_message_at = GREATEST(c.last_message_at, agg.last_at),
         last_inbound_at = CASE WHEN agg.last_in IS NULL THEN c.last_inbound_at ELSE GREATEST(c.last_inbound_at, agg.last_in) END,
         updated_at = now()
       FROM agg WHERE c.id = agg.conversation_id
       RETURNING 1)
     SELECT (SELECT count(*) FROM ins)::int AS inserted, (SELECT count(*) FROM upd)::int AS conversations`,
    [channelId, JSON.stringify(rows), source],
  );
  return out[0]!;
}

/** Applies one history chunk exactly once and updates the channel's sync run. */
export async function applyHistoryChunk(pool: Pool, channelId: number, chunk: HistoryChunk): Promise<ChunkResult> {
  return withTransaction(pool, async (client) => {
    const claimed = await client.query(
      `INSERT INTO sync_chunks (channel_id, phase, chunk_order, progress, messages, messages_stored)
       VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT DO NOTHING RETURNING 1`,
      [channelId, chunk.phase, chunk.chunkOrder, chunk.progress, chunk.rows.length],
    );
    if (claimed.rowCount === 0) return { applied: false, messages: chunk.rows.length, inserted: 0, conversations: 0 };
    const rows = chunk.rows.map((r) => messageRow(r.message, r.waId, r.direction, r.status));
    // Same order in every transaction: two chunks touching the same customers never deadlock.
    rows.sort((a, b) => (a.wa_id < b.wa_id ? -1 : a.wa_id > b.wa_id ? 1 : 0));
    await ensureConversations(client, channelId, rows.map((r) => r.wa_id));
    const { inserted, conversations } = await insertMessages(client, channelId, 'history', rows);
    await client.query('UPDATE sync_chunks SET messages_stored = $4 WHERE channel_id = $1 AND phase = $2 AND chunk_order = $3', [channelId, chunk.phase, chunk.chunkOrder, inserted]);
    await client.query(
      `INSERT INTO sync_runs (channel_id, phase, progress, chunks_applied, messages_stored, status, completed_at)
       VALUES ($1::bigint, $2::smallint, $3::smallint, 1, $4::bigint, CASE WHEN $3::smallint >= 100 THEN 'completed' ELSE 'running' END, CASE WHEN $3::smallint >= 100 THEN now() END)
       ON CONFLICT (channel_id) DO UPDATE SET
         phase = GREATEST(sync_runs.phase, EXCLUDED.phase),
         progress = GREATEST(sync_runs.progress, EXCLUDED.progress),
         chunks_applied = sync_runs.chunks_applied + 1,
         messages_stored = sync_runs.messages_stored + EXCLUDED.messages_stored,
         status = CASE WHEN GREATEST(sync_runs.progress, EXCLUDED.progress) >= 100 THEN 'completed'
                       WHEN sync_runs.status = 'completed' THEN 'running' ELSE sync_runs.status END,
         completed_at = CASE WHEN GREATEST(sync_runs.progress, EXCLUDED.progress) >= 100 THEN COALESCE(sync_runs.completed_at, now()) END,
         updated_at = now()`,
      [channelId, chunk.phase, chunk.progress, inserted],
    );
    return { applied: true, messages: chunk.rows.length, inserted, conversations };
  });
}

/** Chunk deliveries seen by the inbound path (repeats included), before they are applied. */
export async function noteChunksReceived(pool: Pool, channelId: number, count: number): Promise<void> {
  await pool.query(
    `INSERT INTO sync_runs (channel_id, chunks_received) VALUES ($1::bigint, $2::int)
     ON CONFLICT (channel_id) DO UPDATE SET chunks_received = sync_runs.chunks_received + $2::int, updated_at = now()`,
    [channelId, count],
  );
}

/** A chunk that can never be applied (dead-lettered), or Meta's error on the sync (e.g. declined). */
export async function recordSyncFailure(pool: Pool, channelId: number, failure: { chunkFailed?: boolean; code?: number | null; message: string }): Promise<void> {
  const declined = failure.code === 2593109;
  await pool.query(
    `INSERT INTO sync_runs (channel_id, status, chunks_failed, error_code, error_message)
     VALUES ($1::bigint, $2::text, $3::int, $4::int, $5::text)
     ON CONFLICT (channel_id) DO UPDATE SET
       status = CASE WHEN $2::text = 'declined' THEN 'declined' WHEN sync_runs.status = 'completed' THEN 'completed' ELSE $2::text END,
       chunks_failed = sync_runs.chunks_failed + $3::int,
       error_code = COALESCE($4::int, sync_runs.error_code), error_message = $5::text, updated_at = now()`,
    [channelId, declined ? 'declined' : failure.chunkFailed ? 'running' : 'failed', failure.chunkFailed ? 1 : 0, failure.code ?? null, failure.message],
  );
}

/** Echoes: messages the business sent from the app, stored as outbound; edits and revokes applied. */
export async function storeEchoes(pool: Pool, channelId: number, echoes: EchoRow[]): Promise<{ inserted: number; edited: number; revoked: number }> {
  if (echoes.length === 0) return { inserted: 0, edited: 0, revoked: 0 };
  return withTransaction(pool, async (client) => {
    await ensureConversations(client, channelId, echoes.map((e) => e.waId));
    const { inserted } = await insertMessages(client, channelId, 'echo', echoes.map((e) => messageRow(e.message, e.waId, 'outbound', 'sent')));
    let edited = 0;
    let revoked = 0;
    for (const e of echoes) {
      if (!e.targetWamid) continue;
      if (e.message.type === 'edit') {
        const r = await client.query('UPDATE messages SET body = COALESCE($2, body), edited_at = $3, updated_at = now() WHERE wamid = $1 AND (edited_at IS NULL OR edited_at <= $3)', [e.targetWamid, e.newBody, e.message.timestamp]);
        edited += r.rowCount ?? 0;
      } else if (e.message.type === 'revoke') {
        const r = await client.query('UPDATE messages SET revoked_at = COALESCE(revoked_at, $2), updated_at = now() WHERE wamid = $1', [e.targetWamid, e.message.timestamp]);
        revoked += r.rowCount ?? 0;
      }
    }
    return { inserted, edited, revoked };
  });
}

/** The business app's contact book: saved names added or updated, removals marked (rows stay). */
export async function applyStateSync(pool: Pool, rows: StateSyncRow[]): Promise<number> {
  let n = 0;
  for (const r of [...rows].sort((a, b) => a.at.getTime() - b.at.getTime())) {
    const res = r.action === 'add'
      ? await pool.query(
        `INSERT INTO contacts (wa_id, saved_name) VALUES ($1, $2)
         ON CONFLICT (wa_id) DO UPDATE SET saved_name = COALESCE(EXCLUDED.saved_name, contacts.saved_name), removed_at = NULL, updated_at = now()`,
        [r.waId, r.fullName])
      : await pool.query('UPDATE contacts SET removed_at = $2, updated_at = now() WHERE wa_id = $1', [r.waId, r.at]);
    n += res.rowCount ?? 0;
  }
  return n;
}

export interface SyncStatus {
  channelId: number;
  status: string;
  phase: number;
  progress: number;
  chunksReceived: number;
  chunksApplied: number;
  chunksFailed: number;
  messagesStored: number;
  error: { code: number | null; message: string } | null;
  startedAt: string;
  updatedAt: string;
  completedAt: string | null;
}

export async function syncStatus(pool: Pool, channelId: number): Promise<SyncStatus | undefined> {
  const { rows } = await pool.query('SELECT * FROM sync_runs WHERE channel_id = $1', [channelId]);
  const r = rows[0] as Record<string, unknown> | undefined;
  if (!r) return undefined;
  const d = (v: unknown) => (v instanceof Date ? v.toISOString() : (v as string | null));
  return {
    channelId, status: r.status as string, phase: r.phase as number, progress: r.progress as number,
    chunksReceived: r.chunks_received as number, chunksApplied: r.chunks_applied as number, chunksFailed: r.chunks_failed as number,
    messagesStored: Number(r.messages_stored),
    error: r.error_message ? { code: (r.error_code as number | null) ?? null, message: r.error_message as string } : null,
    startedAt: d(r.started_at)!, updatedAt: d(r.updated_at)!, completedAt: d(r.completed_at),
  };
}
