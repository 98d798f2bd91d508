// Sending a file we store (an inbound message's media, an upload) by OUR media id. Meta takes a
// media `id` only from the phone number that uploaded it, and only for 30 days; a `link` must be
// one Meta's servers can fetch, which a self-hosted router often is not. So such a send leaves with
// a Meta id of the sending number: the one of an upload of the same bytes by that number still
// young enough, or else the stored bytes uploaded again at send time (remembered as an upload
// row, so the next send of them reuses it).
import type { GraphError } from '../whatsapp/errors.js';
import type { GraphClient } from '../whatsapp/graph-client.js';
import { HttpError } from '../http/errors.js';
import { inAreas } from '../store/conversations.js';
import type { Pool } from '../store/pool.js';
import type { GraphMediaClient } from './graph-media.js';
import type { MediaRepo } from './repo.js';
import type { MediaStore } from './store.js';

/** Where the web leaves our media id in a queued send's payload, for the sender to replace. */
export const STORED_MEDIA_FIELD = 'stored_media_id';

/**
 * An upload's Meta id is reused this long: Meta keeps uploads 30 days, and a send queued behind
 * a paused channel or a throttle may leave well after it was resolved.
 * @defaultValue 25 days
 */
const REUSE_DAYS = 25;

/** Our ids are a bigint identity; Meta's media ids are longer numbers (15+ digits). */
const OUR_ID = /^[1-9]\d{0,17}$/;

type SendMessage = GraphClient['sendMessage'];

/**
 * Our stored media named by a send's `id`, or null when the id is Meta's (not one of ours, or a
 * Meta id this channel knows). A token limited to areas may send the media of its areas' messages
 * and uploads; media not stored (yet) is refused rather than sent as a broken id.
 */
export async function storedMediaOf(pool: Pool, id: string, channelId: number, areaIds: readonly number[] | null): Promise<number | null> {
  if (!OUR_ID.test(id)) return null;
  const { rows } = await pool.query<{ id: number; status: string; origin: string; conversations: number[] }>(
    `SELECT d.id::int, d.status, d.origin,
            ARRAY(SELECT m.conversation_id::int FROM messages m WHERE m.channel_id = d.channel_id AND m.media_id = d.meta_id) AS conversations
       FROM media d
      WHERE d.id = $1::bigint AND NOT EXISTS (SELECT 1 FROM media k WHERE k.channel_id = $2 AND k.meta_id = $3)`,
    [id, channelId, id],
  );
  const row = rows[0];
  if (!row) return null;
  if (areaIds && row.origin === 'inbound') {
    const visible = await Promise.all(row.conversations.map((c) => inAreas(pool, c, areaIds)));
    if (!visible.includes(true)) throw new HttpError(404, 'not_found', `no stored media ${id} in the areas of this token`);
  }
  if (row.status !== 'stored') throw new HttpError(409, `media_${row.status}`, `media ${id} is ${row.status === 'failed' ? 'failed' : 'not stored yet'}: send it once stored`, { status: row.status });
  return row.id;
}

const failure = (httpStatus: number, title: string): { ok: false; outcomeUnknown: false; error: GraphError } => ({
  ok: false,
  outcomeUnknown: false,
  error: { httpStatus, code: null, subcode: null, title, details: null, fbtraceId: null },
});

/**
 * Wraps the sender's Graph call: a payload naming our stored media gets a Meta id of the sending
 * number first. An upload Meta refuses fails the send as Meta's answer does (retry, pause, fail);
 * an upload that never reached an answer sent nothing, so it is retried.
 */
export function storedMediaSender(d: { pool: Pool; repo: MediaRepo; store: MediaStore; graph: GraphMediaClient }): (send: SendMessage) => SendMessage {
  const metaIdFor = async (mediaId: number, phoneNumberId: string, token: string): Promise<{ ok: true; id: string } | { ok: false; outcomeUnknown: false; error: GraphError }> => {
    const { rows } = await d.pool.query<{ key: string | null; status: string; mimeType: string | null; sha256: string | null; filename: string | null; type: string; size: number | null; channelId: number; reusable: string | null }>(
      `SELECT s.storage_key AS key, s.status, s.mime_type AS "mimeType", s.sha256, s.filename, s.type, s.size::float8 AS size, ch.id::int AS "channelId",
              (SELECT u.meta_id FROM media u
                WHERE u.channel_id = ch.id AND u.origin = 'upload' AND u.status = 'stored' AND u.sha256 = s.sha256
                  AND u.stored_at > now() - make_interval(days => $3)
                ORDER BY u.stored_at DESC LIMIT 1) AS reusable
         FROM media s JOIN channels ch ON ch.phone_number_id = $2
        WHERE s.id = $1`,
      [mediaId, phoneNumberId, REUSE_DAYS],
    );
    const s = rows[0];
    if (!s?.key || s.status !== 'stored' || !s.mimeType || !s.sha256) return failure(404, `stored media ${mediaId} is gone`);
    if (s.reusable) return { ok: true, id: s.reusable };
    const obj = await d.store.get(s.key);
    const filename = s.filename ?? `${s.type}.${s.mimeType.split('/')[1]?.split(';')[0] ?? 'bin'}`;
    const up = await d.graph.upload(phoneNumberId, token, { body: obj.body, mimeType: s.mimeType, filename });
    if (!up.ok) return { ok: false, outcomeUnknown: false, error: up.error };
    await d.repo.insertUpload({ channelId: s.channelId, metaId: up.value.id, type: s.type, key: s.key, size: s.size ?? obj.size, mimeType: s.mimeType, sha256: s.sha256, filename });
    return { ok: true, id: up.value.id };
  };

  return (send) => async (phoneNumberId, token, payload) => {
    const type = payload.type;
    const media = typeof type === 'string' ? (payload[type] as Record<string, unknown> | undefined) : undefined;
    if (typeof type !== 'string' || !media || typeof media !== 'object' || !(STORED_MEDIA_FIELD in media)) return send(phoneNumberId, token, payload);
    const { [STORED_MEDIA_FIELD]: ours, ...rest } = media;
    let resolved;
    try {
      resolved = await metaIdFor(Number(ours), phoneNumberId, token);
    } catch (err) {
      return failure(0, `stored media ${String(ours)} not uploaded to Meta: ${(err as Error).message}`);
    }
    if (!resolved.ok) return resolved;
    return send(phoneNumberId, token, { ...payload, [type]: { ...rest, id: resolved.id } });
  };
}
