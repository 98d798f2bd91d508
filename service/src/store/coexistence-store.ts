// Set-based writes for coexistence: a history chunk is a handful of statements whatever its size
// (contacts, conversations and messages in bulk, conversations touched once), in one transaction,
// so a crash mid-chunk leaves nothing half-done; a repeated delivery is a no-op, and every write
// is keyed (wamid, slot, digest) so running it twice changes nothing.
import type { EchoRow, HistoryChunk, MessageChange, StateSyncRow } from '../sync/coexistence.js';
import { statusRank } from '../whatsapp/statuses.js';
import type { InboundMessage } from '../whatsapp/parse.js';
import { applyStatuses } from './inbound-store.js';
import { withTransaction, type Pool, type PoolClient } from './pool.js';

export interface ChunkResult {
  /**
   * `applied`: the slot's first delivery; `followup`: new content in a slot applied before (the
   * media ids of earlier placeholders); `repeat`: the same bytes again, nothing done.
   */
  readonly outcome: 'applied' | 'followup' | 'repeat';
  readonly messages: number;
  /** Rows really inserted (messages already known by wamid are skipped). */
  readonly inserted: number;
  /** Placeholders that got their media id. */
  readonly mediaFilled: number;
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
type MessageRow = ReturnType<typeof messageRow>;

/**
 * One row per wamid, sorted by customer: ON CONFLICT DO UPDATE may touch a row once per
 * statement, and the same lock order in every transaction keeps chunks from deadlocking.
 * Of two copies, the one with a media id wins.
 */
function uniqueRows(rows: MessageRow[]): MessageRow[] {
  const byWamid = new Map<string, MessageRow>();
  for (const r of rows) {
    const prior = byWamid.get(r.wamid);
    if (!prior || (!prior.media_id && r.media_id)) byWamid.set(r.wamid, r);
  }
  return [...byWamid.values()].sort((a, b) => (a.wa_id < b.wa_id ? -1 : a.wa_id > b.wa_id ? 1 : 0));
}

const RECORD = `r(wa_id text, wamid text, direction text, type text, body text, media_id text, media_mime_type text,
  media_sha256 text, media_filename text, latitude double precision, longitude double precision, reply_to_wamid text,
  reaction_to_wamid text, reaction_emoji text, interactive_reply_id text, forwarded boolean, referral jsonb, raw jsonb,
  wa_timestamp timestamptz, status text, status_rank smallint)`;

/** Contacts and conversations for these customers, created when missing; no unread, no activity. */
async function ensureConversations(client: PoolClient, channelId: number, waIds: string[]): Promise<void> {
  const ids = [...new Set(waIds)].sort();
  if (ids.length === 0) return;
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
 * forward once. A known message gets nothing but a media id it lacked (history media arrive as
 * placeholders first). Never touches unread counts: nobody has to read what the app already showed.
 */
async function upsertMessages(client: PoolClient, channelId: number, source: 'history' | 'echo', rows: MessageRow[]): Promise<{ inserted: number; mediaFilled: number; conversations: number }> {
  if (rows.length === 0) return { inserted: 0, mediaFilled: 0, conversations: 0 };
  const { rows: out } = await client.query<{ inserted: number; media_filled: number; conversations: number }>(
    `WITH r AS (SELECT * FROM json_to_recordset($2::json) AS ${RECORD}),
     ins AS (
       INSERT INTO messages AS m (wamid, channel_id, conversation_id, contact_id, direction, source, type, body,
         media_id, media_mime_type, media_sha256, media_filename, latitude, longitude, reply_to_wamid,
         reaction_to_wamid, reaction_emoji, interactive_reply_id, forwarded, referral, raw, wa_timestamp, status, status_rank)
       SELECT r.wamid, $1, cv.id, ct.id, r.direction, $3, r.type, r.body,
         r.media_id, r.media_mime_type, r.media_sha256, r.media_filename, r.latitude, r.longitude, r.reply_to_wamid,
         r.reaction_to_wamid, r.reaction_emoji, r.interactive_reply_id, COALESCE(r.forwarded, false), r.referral, r.raw, r.wa_timestamp, r.status, r.status_rank
       FROM r JOIN contacts ct ON ct.wa_id = r.wa_id
              JOIN conversations cv ON cv.channel_id = $1 AND cv.contact_id = ct.id
       ON CONFLICT (wamid) DO UPDATE SET media_id = EXCLUDED.media_id,
         media_mime_type = COALESCE(EXCLUDED.media_mime_type, m.media_mime_type),
         media_sha256 = COALESCE(EXCLUDED.media_sha256, m.media_sha256),
         media_filename = COALESCE(m.media_filename, EXCLUDED.media_filename),
         raw = EXCLUDED.raw, updated_at = now()
       WHERE m.media_id IS NULL AND EXCLUDED.media_id IS NOT NULL
       RETURNING id, conversation_id, wa_timestamp, direction, (xmax = 0) AS fresh),
     agg AS (
       SELECT DISTINCT ON (conversation_id) conversation_id, id AS last_id, wa_timestamp AS last_at,
              max(wa_timestamp) FILTER (WHERE direction = 'inbound') OVER (PARTITION BY conversation_id) AS last_in
       FROM ins WHERE fresh ORDER BY conversation_id, wa_timestamp DESC, id DESC),
     upd AS (
       UPDATE conversations c SET
         last_message_id = CASE WHEN c.last_message_at IS NULL OR agg.last_at >= c.last_message_at THEN agg.last_id ELSE c.last_message_id END,
         last_message_at = GREATEST(c.last_message_at, agg.last_at),
         last_inbound_at = CASE WHEN agg.last_in IS NULL THEN c.last_inbound_at ELSE GREATEST(c.last_inbound_at, agg.last_in) END,
         updated_at = now()
       FROM agg WHERE c.id = agg.conversation_id
       RETURNING 1)
     SELECT (SELECT count(*) FROM ins WHERE fresh)::int AS inserted, (SELECT count(*) FROM ins WHERE NOT fresh)::int AS media_filled,
            (SELECT count(*) FROM upd)::int AS conversations`,
    [channelId, JSON.stringify(rows), source],
  );
  const r = out[0]!;
  return { inserted: r.inserted, mediaFilled: r.media_filled, conversations: r.conversations };
}

/** An edit or revoke to keep, with its own id and time. */
interface ChangeRow {
  readonly wamid: string;
  readonly target_wamid: string;
  readonly kind: 'edit' | 'revoke';
  readonly body: string | null;
  readonly wa_timestamp: string;
  readonly raw: unknown;
}

const changeRow = (m: InboundMessage, c: MessageChange): ChangeRow => ({ wamid: m.wamid, target_wamid: c.targetWamid, kind: c.kind, body: c.body, wa_timestamp: m.timestamp.toISOString(), raw: m.raw });

/** Keeps edits and revokes (once each, by their own wamid); returns how many were new. */
async function storeChanges(client: PoolClient, changes: ChangeRow[]): Promise<number> {
  if (changes.length === 0) return 0;
  const res = await client.query(
    `INSERT INTO message_edits (wamid, target_wamid, kind, body, wa_timestamp, raw)
     SELECT wamid, target_wamid, kind, body, wa_timestamp, raw
     FROM json_to_recordset($1::json) AS e(wamid text, target_wamid text, kind text, body text, wa_timestamp timestamptz, raw jsonb)
     ORDER BY wamid ON CONFLICT (wamid) DO NOTHING`,
    [JSON.stringify(changes)],
  );
  return res.rowCount ?? 0;
}

/**
 * Derives these messages' edits and revokes from every one kept: the latest edit's text and time,
 * the first revoke. Order of arrival cannot matter, and running it twice changes nothing.
 */
async function applyChanges(client: PoolClient, wamids: readonly string[]): Promise<{ edited: number; revoked: number }> {
  if (wamids.length === 0) return { edited: 0, revoked: 0 };
  const { rows } = await client.query<{ edited: boolean; revoked: boolean }>(
    `WITH e AS (
       SELECT target_wamid,
              (array_agg(body ORDER BY wa_timestamp DESC, wamid DESC) FILTER (WHERE kind = 'edit'))[1] AS body,
              max(wa_timestamp) FILTER (WHERE kind = 'edit') AS edited_at,
              min(wa_timestamp) FILTER (WHERE kind = 'revoke') AS revoked_at
       FROM message_edits WHERE target_wamid = ANY($1::text[]) GROUP BY target_wamid)
     UPDATE messages m SET
       body = CASE WHEN e.edited_at IS NOT NULL AND (m.edited_at IS NULL OR e.edited_at > m.edited_at) THEN COALESCE(e.body, m.body) ELSE m.body END,
       edited_at = GREATEST(m.edited_at, e.edited_at),
       revoked_at = LEAST(m.revoked_at, e.revoked_at),
       updated_at = now()
     FROM e
     WHERE m.wamid = e.target_wamid
       AND (e.edited_at > COALESCE(m.edited_at, '-infinity') OR e.revoked_at < COALESCE(m.revoked_at, 'infinity'))
     RETURNING (e.edited_at IS NOT NULL) AS edited, (e.revoked_at IS NOT NULL) AS revoked`,
    [wamids],
  );
  return { edited: rows.filter((r) => r.edited).length, revoked: rows.filter((r) => r.revoked).length };
}

/** How a chunk delivery relates to what its slot already holds (see ChunkResult.outcome). */
async function claimChunk(client: PoolClient, channelId: number, chunk: HistoryChunk, digest: Buffer): Promise<{ outcome: ChunkResult['outcome']; recovered: boolean }> {
  const first = await client.query<{ fresh: boolean }>(
    `INSERT INTO sync_chunks AS s (channel_id, phase, chunk_order, progress, messages, messages_stored, state, digests, applied_at)
     VALUES ($1, $2, $3, $4, $5, 0, 'applied', ARRAY[$6::bytea], now())
     ON CONFLICT (channel_id, phase, chunk_order) DO UPDATE SET state = 'applied', digests = ARRAY[$6::bytea], error = NULL,
       progress = EXCLUDED.progress, messages = EXCLUDED.messages, applied_at = now()
     WHERE s.state = 'failed'
     RETURNING (xmax = 0) AS fresh`,
    [channelId, chunk.phase, chunk.chunkOrder, chunk.progress, chunk.rows.length, digest],
  );
  if (first.rows[0]) return { outcome: 'applied', recovered: !first.rows[0].fresh };
  const more = await client.query(
    `UPDATE sync_chunks SET digests = digests || $4::bytea
     WHERE channel_id = $1 AND phase = $2 AND chunk_order = $3 AND state = 'applied' AND NOT ($4::bytea = ANY(digests))`,
    [channelId, chunk.phase, chunk.chunkOrder, digest],
  );
  return { outcome: (more.rowCount ?? 0) > 0 ? 'followup' : 'repeat', recovered: false };
}

/**
 * The run's status from its chunks: `declined` stays; `failed` while a chunk is dead-lettered;
 * `completed` once progress reached 100 and no chunk_order is missing (per phase, or across
 * phases when Meta numbers them through); `running` otherwise. Called with the run's row locked,
 * so the last of two chunks committing together sees the other one.
 */
async function settleRun(client: PoolClient, channelId: number): Promise<void> {
  await client.query(
    `UPDATE sync_runs r SET status = n.status,
       completed_at = CASE WHEN n.status = 'completed' THEN COALESCE(r.completed_at, now()) END
     FROM (
       SELECT CASE WHEN s.status = 'declined' THEN 'declined'
                   WHEN s.chunks_failed > 0 THEN 'failed'
                   WHEN s.progress >= 100 AND (p.per_phase OR (p.total = p.top - p.bottom + 1 AND p.bottom <= 1)) THEN 'completed'
                   ELSE 'running' END AS status
       FROM sync_runs s,
            (SELECT bool_and(n = mx - mn + 1 AND mn <= 1) AS per_phase, sum(n) AS total, max(mx) AS top, min(mn) AS bottom
             FROM (SELECT count(*) AS n, max(chunk_order) AS mx, min(chunk_order) AS mn
                   FROM sync_chunks WHERE channel_id = $1 AND state = 'applied' GROUP BY phase) g) p
       WHERE s.channel_id = $1) n
     WHERE r.channel_id = $1 AND (r.status <> n.status OR (n.status = 'completed') <> (r.completed_at IS NOT NULL))`,
    [channelId],
  );
}

/**
 * Applies one history chunk delivery and updates the channel's sync run, in one transaction: a
 * crash leaves nothing half-done, a repeat does nothing, a follow-up fills what it brings.
 * `digest` identifies the delivery's content (the chunk object's bytes).
 */
export async function applyHistoryChunk(pool: Pool, channelId: number, chunk: HistoryChunk, digest: Buffer): Promise<ChunkResult> {
  return withTransaction(pool, async (client) => {
    const { outcome, recovered } = await claimChunk(client, channelId, chunk, digest);
    if (outcome === 'repeat') return { outcome, messages: chunk.rows.length, inserted: 0, mediaFilled: 0, conversations: 0 };
    const rows = uniqueRows(chunk.rows.filter((r) => !r.change).map((r) => messageRow(r.message, r.waId, r.direction, r.status)));
    const changes = chunk.rows.flatMap((r) => (r.change ? [changeRow(r.message, r.change)] : []));
    await ensureConversations(client, channelId, rows.map((r) => r.wa_id));
    const { inserted, mediaFilled, conversations } = await upsertMessages(client, channelId, 'history', rows);
    await storeChanges(client, changes);
    // Edits kept before their message landed (an echo's edit, delivered first) apply now.
    await applyChanges(client, [...rows.map((r) => r.wamid), ...changes.map((c) => c.target_wamid)]);
    await client.query(
      'UPDATE sync_chunks SET messages_stored = messages_stored + $4 WHERE channel_id = $1 AND phase = $2 AND chunk_order = $3',
      [channelId, chunk.phase, chunk.chunkOrder, inserted],
    );
    await client.query(
      `INSERT INTO sync_runs AS s (channel_id, phase, progress, chunks_applied, messages_stored)
       VALUES ($1::bigint, $2::smallint, $3::smallint, $4::int, $5::bigint)
       ON CONFLICT (channel_id) DO UPDATE SET
         phase = GREATEST(s.phase, EXCLUDED.phase),
         progress = GREATEST(s.progress, EXCLUDED.progress),
         chunks_applied = s.chunks_applied + EXCLUDED.chunks_applied,
         chunks_failed = GREATEST(0, s.chunks_failed - $6::int),
         messages_stored = s.messages_stored + EXCLUDED.messages_stored,
         updated_at = now()`,
      [channelId, chunk.phase, chunk.progress, outcome === 'applied' ? 1 : 0, inserted, recovered ? 1 : 0],
    );
    await settleRun(client, channelId);
    return { outcome, messages: chunk.rows.length, inserted, mediaFilled, conversations };
  });
}

/** Chunk deliveries seen, before they are applied: a delivery counts once, however often its job runs. */
export async function noteChunksReceived(pool: Pool, channelId: number, deliveries: readonly Buffer[]): Promise<void> {
  await pool.query(
    `WITH fresh AS (
       INSERT INTO sync_chunk_deliveries (channel_id, delivery) SELECT $1::bigint, d FROM unnest($2::bytea[]) AS d
       ON CONFLICT DO NOTHING RETURNING 1),
     n AS (SELECT count(*)::int AS n FROM fresh)
     INSERT INTO sync_runs (channel_id, chunks_received) SELECT $1::bigint, n FROM n WHERE n > 0
     ON CONFLICT (channel_id) DO UPDATE SET chunks_received = sync_runs.chunks_received + EXCLUDED.chunks_received, updated_at = now()`,
    [channelId, deliveries],
  );
}

/**
 * A chunk that can never be applied as it is (dead-lettered): kept as failed, which makes the run
 * `failed` until a replay applies it. A slot already applied stays applied.
 */
export async function recordChunkFailure(pool: Pool, channelId: number, chunk: HistoryChunk, message: string): Promise<boolean> {
  return withTransaction(pool, async (client) => {
    const res = await client.query(
      `INSERT INTO sync_chunks (channel_id, phase, chunk_order, progress, messages, messages_stored, state, error, applied_at)
       VALUES ($1, $2, $3, $4, $5, 0, 'failed', $6, NULL)
       ON CONFLICT (channel_id, phase, chunk_order) DO NOTHING`,
      [channelId, chunk.phase, chunk.chunkOrder, chunk.progress, chunk.rows.length, message],
    );
    if ((res.rowCount ?? 0) === 0) return false;
    await client.query(
      `INSERT INTO sync_runs AS s (channel_id, chunks_failed, error_message) VALUES ($1::bigint, 1, $2::text)
       ON CONFLICT (channel_id) DO UPDATE SET chunks_failed = s.chunks_failed + 1, error_message = $2::text, updated_at = now()`,
      [channelId, message],
    );
    await settleRun(client, channelId);
    return true;
  });
}

/** Meta's error on the sync itself (2593109: the business declined to share its history). */
export async function recordSyncError(pool: Pool, channelId: number, error: { code: number | null; message: string }): Promise<void> {
  const declined = error.code === 2593109;
  await pool.query(
    `INSERT INTO sync_runs AS s (channel_id, status, error_code, error_message)
     VALUES ($1::bigint, $2::text, $3::int, $4::text)
     ON CONFLICT (channel_id) DO UPDATE SET
       status = CASE WHEN $2::text = 'declined' THEN 'declined' WHEN s.status = 'completed' THEN 'completed' ELSE $2::text END,
       error_code = COALESCE($3::int, s.error_code), error_message = $4::text, updated_at = now()`,
    [channelId, declined ? 'declined' : 'failed', error.code, error.message],
  );
}

/**
 * Echoes: messages the business sent from the app, stored as outbound. Their edits and revokes
 * change the original (kept until it lands if it has not), and statuses Meta reported before the
 * echo arrived apply at once.
 */
export async function storeEchoes(pool: Pool, channelId: number, echoes: EchoRow[]): Promise<{ inserted: number; edited: number; revoked: number }> {
  if (echoes.length === 0) return { inserted: 0, edited: 0, revoked: 0 };
  return withTransaction(pool, async (client) => {
    const rows = uniqueRows(echoes.filter((e) => !e.change).map((e) => messageRow(e.message, e.waId, 'outbound', 'sent')));
    const changes = echoes.flatMap((e) => (e.change ? [changeRow(e.message, e.change)] : []));
    await ensureConversations(client, channelId, rows.map((r) => r.wa_id));
    const { inserted } = await upsertMessages(client, channelId, 'echo', rows);
    await storeChanges(client, changes);
    const wamids = rows.map((r) => r.wamid);
    const { edited, revoked } = await applyChanges(client, [...wamids, ...changes.map((c) => c.target_wamid)]);
    if (wamids.length > 0) await applyStatuses(client, wamids);
    return { inserted, edited, revoked };
  });
}

/**
 * The business app's contact book for one number, in three statements whatever its size: the
 * latest change per contact wins, also against one applied earlier (an add delivered late never
 * revives a removed contact). Removed contacts keep their row, marked.
 */
export async function applyStateSync(pool: Pool, channelId: number, rows: StateSyncRow[]): Promise<number> {
  const latest = new Map<string, StateSyncRow>();
  for (const r of rows) {
    const prior = latest.get(r.waId);
    if (!prior || r.at.getTime() >= prior.at.getTime()) latest.set(r.waId, r);
  }
  if (latest.size === 0) return 0;
  const list = [...latest.values()].sort((a, b) => (a.waId < b.waId ? -1 : 1));
  return withTransaction(pool, async (client) => {
    await client.query('INSERT INTO contacts (wa_id) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT (wa_id) DO NOTHING', [list.map((r) => r.waId)]);
    const res = await client.query(
      `INSERT INTO channel_contacts AS cc (channel_id, contact_id, saved_name, first_name, removed_at, synced_at)
       SELECT $1, ct.id, s.full_name, s.first_name, CASE WHEN s.action = 'remove' THEN s.at END, s.at
       FROM json_to_recordset($2::json) AS s(wa_id text, action text, full_name text, first_name text, at timestamptz)
       JOIN contacts ct ON ct.wa_id = s.wa_id
       ORDER BY ct.id
       ON CONFLICT (channel_id, contact_id) DO UPDATE SET
         saved_name = CASE WHEN EXCLUDED.removed_at IS NULL THEN COALESCE(EXCLUDED.saved_name, cc.saved_name) ELSE cc.saved_name END,
         first_name = CASE WHEN EXCLUDED.removed_at IS NULL THEN COALESCE(EXCLUDED.first_name, cc.first_name) ELSE cc.first_name END,
         removed_at = EXCLUDED.removed_at, synced_at = EXCLUDED.synced_at, updated_at = now()
       WHERE cc.synced_at <= EXCLUDED.synced_at`,
      [channelId, JSON.stringify(list.map((r) => ({ wa_id: r.waId, action: r.action, full_name: r.fullName, first_name: r.firstName, at: r.at.toISOString() })))],
    );
    return res.rowCount ?? 0;
  });
}

export interface SyncStatus {
  channelId: number;
  /** `none` (no history seen), `running`, `completed`, `declined` or `failed` (a chunk dead-lettered). */
  status: string;
  phase: number;
  progress: number;
  chunksReceived: number;
  chunksApplied: number;
  /** Chunks dead-lettered and not applied since (a replay applies them). */
  chunksFailed: number;
  messagesStored: number;
  error: { code: number | null; message: string } | null;
  /** The first failed chunks, to find them in the dead-letter queue. */
  failedChunks: { phase: number; chunkOrder: number; error: string | null }[];
  startedAt: string | null;
  updatedAt: string | null;
  completedAt: string | null;
}

const iso = (v: unknown) => (v instanceof Date ? v.toISOString() : null);

export async function syncStatus(pool: Pool, channelId: number): Promise<SyncStatus> {
  const { rows } = await pool.query('SELECT * FROM sync_runs WHERE channel_id = $1', [channelId]);
  const r = rows[0] as Record<string, unknown> | undefined;
  if (!r) {
    return { channelId, status: 'none', phase: 0, progress: 0, chunksReceived: 0, chunksApplied: 0, chunksFailed: 0, messagesStored: 0, error: null, failedChunks: [], startedAt: null, updatedAt: null, completedAt: null };
  }
  const failed = Number(r.chunks_failed) > 0
    ? (await pool.query<{ phase: number; chunk_order: number; error: string | null }>(
      "SELECT phase, chunk_order, error FROM sync_chunks WHERE channel_id = $1 AND state = 'failed' ORDER BY phase, chunk_order LIMIT 20", [channelId])).rows
    : [];
  return {
    channelId, status: r.status as string, phase: r.phase as number, progress: r.progress as number,
    chunksReceived: r.chunks_received as number, chunksApplied: r.chunks_applied as number, chunksFailed: r.chunks_failed as number,
    messagesStored: Number(r.messages_stored),
    error: r.error_message ? { code: (r.error_code as number | null) ?? null, message: r.error_message as string } : null,
    failedChunks: failed.map((f) => ({ phase: f.phase, chunkOrder: f.chunk_order, error: f.error })),
    startedAt: iso(r.started_at), updatedAt: iso(r.updated_at), completedAt: iso(r.completed_at),
  };
}

export interface SyncRunFigures {
  readonly channelId: number;
  readonly status: string;
  readonly progress: number;
  readonly chunksReceived: number;
  readonly chunksApplied: number;
  readonly chunksFailed: number;
  readonly messagesStored: number;
  /** When the run last moved: its latest applied chunk, or its start before any chunk applied (Unix seconds). */
  readonly lastAppliedAt: number;
}

/** Every channel's run, for the metrics gauges. */
export async function syncRunFigures(pool: Pool): Promise<SyncRunFigures[]> {
  const { rows } = await pool.query<{ channel_id: string; status: string; progress: number; chunks_received: number; chunks_applied: number; chunks_failed: number; messages_stored: string; last_applied_at: number }>(
    `SELECT r.channel_id, r.status, r.progress, r.chunks_received, r.chunks_applied, r.chunks_failed, r.messages_stored,
            extract(epoch FROM COALESCE(
              (SELECT max(c.applied_at) FROM sync_chunks c WHERE c.channel_id = r.channel_id AND c.state = 'applied'),
              r.started_at))::float8 AS last_applied_at
     FROM sync_runs r ORDER BY r.channel_id`,
  );
  return rows.map((r) => ({
    channelId: Number(r.channel_id), status: r.status, progress: r.progress, chunksReceived: r.chunks_received, chunksApplied: r.chunks_applied,
    chunksFailed: r.chunks_failed, messagesStored: Number(r.messages_stored), lastAppliedAt: r.last_applied_at,
  }));
}
