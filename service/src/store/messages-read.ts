// Read side of messages for the operator API: one message with its status history.
import type { Pool } from './pool.js';
import { mediaLink } from '../media/links.js';

/** The media row of a message, for `media.status` and `media.url`: append to a query on `messages m`. */
export const MEDIA_JOIN = 'LEFT JOIN media md ON md.channel_id = m.channel_id AND md.meta_id = m.media_id';
export const MEDIA_COLUMNS = 'md.id::int AS media_row_id, md.status AS media_status, md.error_code AS media_error_code';

export interface MessageView {
  id: number;
  wamid: string | null;
  channelId: number;
  conversationId: number;
  /** `waId`: the phone number, or the BSUID when Meta withholds the number of a username user. */
  contact: { id: number; waId: string; profileName: string | null; userId: string | null; username: string | null };
  direction: 'inbound' | 'outbound';
  source: string;
  type: string;
  body: string | null;
  /** `mediaId`: our copy's id (send it again by it); `status`: our copy (`pending`, `stored`, `failed`); `url`: a signed, expiring link to it (409 until stored). */
  media: { id: string | null; mediaId: number | null; mimeType: string | null; sha256: string | null; filename: string | null; status: string | null; error: string | null; url: string | null } | null;
  location: { latitude: number; longitude: number } | null;
  replyToWamid: string | null;
  reaction: { toWamid: string | null; emoji: string | null } | null;
  interactiveReplyId: string | null;
  forwarded: boolean;
  referral: unknown;
  status: string;
  timestamp: string;
  sentAt: string | null;
  deliveredAt: string | null;
  readAt: string | null;
  failedAt: string | null;
  error: { code: number | null; title: string | null; details: string | null } | null;
  statuses: { status: string; timestamp: string; recipientId: string | null; error: { code: number | null; title: string | null; details: string | null } | null; receivedAt: string }[];
  raw: unknown;
  createdAt: string;
}

/** A time as the API writes it; a string when the query read it with ISO_TIMES (./pg-time.ts). */
const iso = (d: Date | string | null): string | null => (d === null ? null : typeof d === 'string' ? d : d.toISOString());

export type Row = Record<string, unknown> & { id: number; wamid: string | null };

export function toView(r: Row, statuses: Row[]): MessageView {
  const d = (k: string) => r[k] as Date | string | null;
  return {
    id: r.id,
    wamid: r.wamid,
    channelId: r.channel_id as number,
    conversationId: r.conversation_id as number,
    contact: { id: r.contact_id as number, waId: r.wa_id as string, profileName: r.profile_name as string | null, userId: r.user_id as string | null, username: r.username as string | null },
    direction: r.direction as 'inbound' | 'outbound',
    source: r.source as string,
    type: r.type as string,
    body: r.body as string | null,
    media: r.media_id || r.media_mime_type
      ? { id: r.media_id as string | null, mediaId: (r.media_row_id as number | undefined) ?? null, mimeType: r.media_mime_type as string | null, sha256: r.media_sha256 as string | null, filename: r.media_filename as string | null,
          status: (r.media_status as string | undefined) ?? null, error: (r.media_error_code as string | undefined) ?? null, url: r.media_status && r.media_status !== 'failed' ? mediaLink(r.id) : null }
      : null,
    location: r.latitude !== null && r.longitude !== null ? { latitude: r.latitude as number, longitude: r.longitude as number } : null,
    replyToWamid: r.reply_to_wamid as string | null,
    reaction: r.type === 'reaction' ? { toWamid: r.reaction_to_wamid as string | null, emoji: r.reaction_emoji as string | null } : null,
    interactiveReplyId: r.interactive_reply_id as string | null,
    forwarded: r.forwarded as boolean,
    referral: r.referral,
    status: r.status as string,
    timestamp: iso(d('wa_timestamp'))!,
    sentAt: iso(d('sent_at')),
    deliveredAt: iso(d('delivered_at')),
    readAt: iso(d('read_at')),
    failedAt: iso(d('failed_at')),
    error: r.error_code !== null || r.error_title !== null ? { code: r.error_code as number | null, title: r.error_title as string | null, details: r.error_details as string | null } : null,
    statuses: statuses.map((s) => ({
      status: s.status as string,
      timestamp: iso(s.wa_timestamp as Date)!,
      recipientId: s.recipient_id as string | null,
      error: s.error_code !== null || s.error_title !== null ? { code: s.error_code as number | null, title: s.error_title as string | null, details: s.error_details as string | null } : null,
      receivedAt: iso(s.received_at as Date)!,
    })),
    raw: r.raw,
    createdAt: iso(d('created_at'))!,
  };
}

/** A message by numeric id or by wamid, with every status Meta reported for it. */
export async function findMessage(pool: Pool, by: { id: number } | { wamid: string }): Promise<MessageView | null> {
  const where = 'id' in by ? 'm.id = $1' : 'm.wamid = $1';
  const { rows } = await pool.query<Row>(
    `SELECT m.*, c.wa_id, c.profile_name, c.user_id, c.username, ${MEDIA_COLUMNS} FROM messages m JOIN contacts c ON c.id = m.contact_id ${MEDIA_JOIN} WHERE ${where}`,
    ['id' in by ? by.id : by.wamid],
  );
  const row = rows[0];
  if (!row) return null;
  const statuses = row.wamid
    ? (await pool.query<Row>('SELECT * FROM message_statuses WHERE wamid = $1 ORDER BY wa_timestamp, status_rank, id', [row.wamid])).rows
    : [];
  return toView(row, statuses);
}
