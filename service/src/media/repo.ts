// The media table: what to download, what was stored, what failed and why.
import { pauseChannel } from '../store/outbound-store.js';
import type { Pool } from '../store/pool.js';

export interface MediaRow {
  readonly id: number;
  readonly channelId: number;
  readonly metaId: string | null;
  readonly origin: 'inbound' | 'upload';
  readonly live: boolean;
  readonly type: string;
  readonly status: 'pending' | 'stored' | 'failed';
  readonly storageKey: string | null;
  readonly size: number | null;
  readonly mimeType: string | null;
  readonly sha256: string | null;
  readonly filename: string | null;
  readonly errorCode: string | null;
  readonly errorReason: string | null;
}

const columns = (t: string) => `${t}.id::int, ${t}.channel_id::int AS "channelId", ${t}.meta_id AS "metaId", ${t}.origin, ${t}.live, ${t}.type,
  ${t}.status, ${t}.storage_key AS "storageKey", ${t}.size::float8 AS size, ${t}.mime_type AS "mimeType", ${t}.sha256, ${t}.filename,
  ${t}.error_code AS "errorCode", ${t}.error_reason AS "errorReason"`;

/** How one download ended. */
export type MediaOutcome =
  | { readonly id: number; readonly status: 'stored'; readonly key: string; readonly size: number; readonly mimeType: string; readonly sha256: string }
  | { readonly id: number; readonly status: 'failed'; readonly code: string; readonly reason: string };

export class MediaRepo {
  constructor(private readonly pool: Pool) {}

  /** Rows to download with their channel's token and pause, in one statement for the jobs in flight. */
  async forDownload(ids: readonly number[]): Promise<Map<number, MediaRow & { accessToken: string | null; pausedReason: string | null }>> {
    const { rows } = await this.pool.query<MediaRow & { accessToken: string | null; pausedReason: string | null }>(
      `SELECT ${columns('d')}, c.access_token AS "accessToken", c.paused_reason AS "pausedReason" FROM media d JOIN channels c ON c.id = d.channel_id WHERE d.id = ANY($1::bigint[])`,
      [ids],
    );
    return new Map(rows.map((r) => [r.id, r]));
  }

  /** Pauses the channel's sends and downloads until a new token is saved, as a refused send does. */
  async pauseChannel(channelId: number, reason: string): Promise<void> {
    await pauseChannel(this.pool, channelId, reason);
  }

  /** The media of a message (its channel's row for the message's Meta media id). */
  async ofMessage(messageId: number): Promise<(MediaRow & { conversationId: number }) | null> {
    const { rows } = await this.pool.query<MediaRow & { conversationId: number }>(
      `SELECT ${columns('d')}, m.conversation_id::int AS "conversationId"
         FROM messages m JOIN media d ON d.channel_id = m.channel_id AND d.meta_id = m.media_id
        WHERE m.id = $1`,
      [messageId],
    );
    return rows[0] ?? null;
  }

  /**
   * Claims pending downloads not yet queued (and those queued long ago, whose job a crash between
   * claim and enqueue may have lost; their job ids make a second enqueue of a live job a no-op),
   * live before history. Each part reads only the rows it may take, through its own index
   * (migration 025): media still downloading are not read by every poll.
   */
  /** `requeued`: queued before and not done since (its job may have been lost, or have failed without the row saying so). */
  async claimToEnqueue(limit: number, requeueAfterMs: number): Promise<{ id: number; channelId: number; live: boolean; requeued: boolean }[]> {
    const queuedBefore = "status = 'pending' AND origin = 'inbound' AND enqueued_at < now() - make_interval(secs => $2::float8 / 1000)";
    const { rows } = await this.pool.query<{ id: number; channelId: number; live: boolean; requeued: boolean }>(
      `WITH fresh AS (
         SELECT id, live FROM media WHERE status = 'pending' AND origin = 'inbound' AND enqueued_at IS NULL
          ORDER BY live DESC, id LIMIT $1 FOR UPDATE SKIP LOCKED
       ), lost_live AS (
         SELECT id, live FROM media WHERE live AND ${queuedBefore} ORDER BY enqueued_at LIMIT $1 FOR UPDATE SKIP LOCKED
       ), lost_history AS (
         SELECT id, live FROM media WHERE NOT live AND ${queuedBefore} ORDER BY enqueued_at LIMIT $1 FOR UPDATE SKIP LOCKED
       )
       UPDATE media m SET enqueued_at = now()
         FROM (SELECT id, requeued FROM (SELECT id, live, false AS requeued FROM fresh
                 UNION ALL SELECT id, live, true FROM lost_live UNION ALL SELECT id, live, true FROM lost_history) c
                ORDER BY live DESC, id LIMIT $1) c
        WHERE m.id = c.id
        RETURNING m.id::int, m.channel_id::int AS "channelId", m.live, c.requeued`,
      [limit, requeueAfterMs],
    );
    return rows;
  }

  async unclaim(ids: readonly number[]): Promise<void> {
    await this.pool.query('UPDATE media SET enqueued_at = NULL WHERE id = ANY($1::bigint[])', [ids]);
  }

  /** Stored objects with these bytes and the size each download counted, by hex SHA-256 (the same file sent twice is kept once). */
  async storedKeysOf(sha256Hex: readonly string[]): Promise<Map<string, { key: string; size: number }>> {
    const { rows } = await this.pool.query<{ sha256: string; key: string; size: number }>(
      "SELECT DISTINCT ON (sha256) sha256, storage_key AS key, size::float8 AS size FROM media WHERE sha256 = ANY($1::text[]) AND status = 'stored'",
      [sha256Hex],
    );
    return new Map(rows.map((r) => [r.sha256, { key: r.key, size: r.size }]));
  }

  /**
   * Records the outcomes of many downloads in one statement (a row already stored keeps its
   * object) and answers the messages of each row it changed, for the `message.media` event.
   */
  async finish(outcomes: readonly MediaOutcome[]): Promise<{ mediaId: number; channelId: number; status: 'stored' | 'failed'; messageId: number | null; conversationId: number | null }[]> {
    // One change per row: a statement cannot change the same row twice.
    const byId = new Map(outcomes.map((o) => [o.id, o]));
    const list = [...byId.values()];
    const stored = (o: MediaOutcome) => (o.status === 'stored' ? o : null);
    const failed = (o: MediaOutcome) => (o.status === 'failed' ? o : null);
    const { rows } = await this.pool.query<{ mediaId: number; channelId: number; status: 'stored' | 'failed'; messageId: number | null; conversationId: number | null }>(
      `WITH v AS (
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])
                    AS v(id, key, size, mime_type, sha256, error_code, error_reason)
       ), u AS (
         UPDATE media d
            SET status = CASE WHEN v.error_code IS NULL THEN 'stored' ELSE 'failed' END,
                storage_key = coalesce(v.key, d.storage_key), size = coalesce(v.size, d.size),
                mime_type = coalesce(v.mime_type, d.mime_type), sha256 = coalesce(v.sha256, d.sha256),
                error_code = v.error_code, error_reason = v.error_reason,
                stored_at = CASE WHEN v.error_code IS NULL THEN now() ELSE d.stored_at END, updated_at = now()
           FROM v
          WHERE d.id = v.id AND d.status <> 'stored'
         RETURNING d.id, d.channel_id, d.meta_id, d.status)
       SELECT u.id::int AS "mediaId", u.channel_id::int AS "channelId", u.status, m.id::int AS "messageId", m.conversation_id::int AS "conversationId"
         FROM u LEFT JOIN messages m ON m.channel_id = u.channel_id AND m.media_id = u.meta_id`,
      [
        list.map((o) => o.id),
        list.map((o) => stored(o)?.key ?? null),
        list.map((o) => stored(o)?.size ?? null),
        list.map((o) => stored(o)?.mimeType ?? null),
        list.map((o) => stored(o)?.sha256 ?? null),
        list.map((o) => failed(o)?.code ?? null),
        list.map((o) => failed(o)?.reason.slice(0, 1000) ?? null),
      ],
    );
    return rows;
  }

  async markFailed(id: number, code: string, reason: string): Promise<void> {
    await this.pool.query("UPDATE media SET status = 'failed', error_code = $2, error_reason = $3, updated_at = now() WHERE id = $1 AND status <> 'stored'", [id, code, reason.slice(0, 1000)]);
  }

  async insertUpload(v: { channelId: number; metaId: string; type: string; key: string; size: number; mimeType: string; sha256: string; filename: string }): Promise<number> {
    const { rows } = await this.pool.query<{ id: number }>(
      `INSERT INTO media (channel_id, meta_id, origin, type, status, storage_key, size, mime_type, sha256, filename, stored_at)
       VALUES ($1, $2, 'upload', $3, 'stored', $4, $5, $6, $7, $8, now()) RETURNING id::int`,
      [v.channelId, v.metaId, v.type, v.key, v.size, v.mimeType, v.sha256, v.filename],
    );
    return rows[0]!.id;
  }

  /** Pending downloads per channel, for the backlog gauge. */
  async backlog(): Promise<{ channelId: number; live: boolean; n: number }[]> {
    const { rows } = await this.pool.query<{ channelId: number; live: boolean; n: number }>(
      `SELECT channel_id::int AS "channelId", live, count(*)::int AS n FROM media WHERE status = 'pending' AND origin = 'inbound' GROUP BY 1, 2`,
    );
    return rows;
  }
}
