// The media table: what to download, what was stored, what failed and why.
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

export class MediaRepo {
  constructor(private readonly pool: Pool) {}

  async byId(id: number): Promise<MediaRow | null> {
    const { rows } = await this.pool.query<MediaRow>(`SELECT ${columns('media')} FROM media WHERE id = $1`, [id]);
    return rows[0] ?? null;
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

  /** The channel's phone number id and token, for Graph calls. */
  async channel(channelId: number): Promise<{ phoneNumberId: string; accessToken: string | null } | null> {
    const { rows } = await this.pool.query<{ phoneNumberId: string; accessToken: string | null }>(
      'SELECT phone_number_id AS "phoneNumberId", access_token AS "accessToken" FROM channels WHERE id = $1',
      [channelId],
    );
    return rows[0] ?? null;
  }

  /**
   * Claims pending downloads not yet queued (and those queued long ago, whose job a crash between
   * claim and enqueue may have lost; their job ids make a second enqueue of a live job a no-op).
   */
  async claimToEnqueue(limit: number, requeueAfterMs: number): Promise<{ id: number; channelId: number; live: boolean }[]> {
    const { rows } = await this.pool.query<{ id: number; channelId: number; live: boolean }>(
      `UPDATE media SET enqueued_at = now()
        WHERE id IN (SELECT id FROM media
                      WHERE status = 'pending' AND origin = 'inbound'
                        AND (enqueued_at IS NULL OR enqueued_at < now() - make_interval(secs => $2::float8 / 1000))
                      ORDER BY live DESC, id LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING id::int, channel_id::int AS "channelId", live`,
      [limit, requeueAfterMs],
    );
    return rows;
  }

  async unclaim(ids: readonly number[]): Promise<void> {
    await this.pool.query('UPDATE media SET enqueued_at = NULL WHERE id = ANY($1::bigint[])', [ids]);
  }

  /** A stored object with these bytes, if any (the same file sent twice is kept once). */
  async storedKeyOf(sha256Hex: string): Promise<string | null> {
    const { rows } = await this.pool.query<{ key: string }>("SELECT storage_key AS key FROM media WHERE sha256 = $1 AND status = 'stored' LIMIT 1", [sha256Hex]);
    return rows[0]?.key ?? null;
  }

  async markStored(id: number, v: { key: string; size: number; mimeType: string; sha256: string }): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `UPDATE media SET status = 'stored', storage_key = $2, size = $3, mime_type = $4, sha256 = $5, error_code = NULL, error_reason = NULL,
              stored_at = now(), updated_at = now()
        WHERE id = $1 AND status <> 'stored'`,
      [id, v.key, v.size, v.mimeType, v.sha256],
    );
    return (rowCount ?? 0) > 0;
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
