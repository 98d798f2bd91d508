// The agent API's read side: conversations by latest activity and their messages, both
// keyset-paginated on the indexes that order them (no OFFSET: page 500 costs what page 1 does).
import type pg from 'pg';
import { mediaLink } from '../media/links.js';
import { MEDIA_JOIN } from './messages-read.js';
import { isoFromPg } from './pg-time.js';
import { tokenLive } from '../tokens/store.js';
import { statement, type Pool } from './pool.js';

/**
 * Where a page stopped: the sort key of its last row. Opaque to callers (base64url JSON). The time
 * is Postgres's own text of it, microseconds included: a JavaScript Date keeps milliseconds, and two
 * rows within one millisecond would otherwise make a page skip one of them.
 */
interface Position {
  readonly t: string | null;
  readonly id: number;
}

export class CursorError extends Error {
  override readonly name = 'CursorError';
}

const PG_TIME = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(?:([+-])(\d{2})(?::?(\d{2}))?|Z)?$/;

/**
 * The shape alone lets through dates Postgres refuses (month 13, February 30, offset +99), which
 * would fail the query: every field is checked against the calendar too.
 */
function isPgTime(t: string): boolean {
  const m = PG_TIME.exec(t);
  if (!m) return false;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const day = new Date(Date.UTC(y, mo - 1, d));
  const calendar = y >= 1 && day.getUTCFullYear() === y && day.getUTCMonth() === mo - 1 && day.getUTCDate() === d;
  const offsetOk = m[8] === undefined || (Number(m[9]) <= 15 && Number(m[10] ?? 0) < 60);
  return calendar && h < 24 && mi < 60 && s < 60 && offsetOk;
}

const encode = (p: Position) => Buffer.from(JSON.stringify(p)).toString('base64url');

export function decodeCursor(cursor: string | undefined): Position | null {
  if (cursor === undefined || cursor === '') return null;
  try {
    const p = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Partial<Position>;
    if (typeof p.id === 'number' && Number.isSafeInteger(p.id) && (p.t === null || (typeof p.t === 'string' && isPgTime(p.t)))) return { t: p.t, id: p.id };
  } catch {
    // reported below
  }
  throw new CursorError('cursor is not one this API gave out');
}

/**
 * The columns a conversation is written from, in the order writeConversation reads them. Rows
 * come back as arrays of Postgres's text (RAW_TEXT) and the JSON is written straight from that
 * text: parsing each row into an object of typed values, building the view's objects and
 * serializing them again cost the web process more than Postgres spent on the whole page.
 */
const CONVERSATION_COLUMNS = `c.id, c.channel_id, c.contact_id, ct.wa_id, ct.profile_name, ct.user_id, ct.username,
       lm.id, lm.wamid, lm.direction, lm.type, lm.body, lm.status, lm.wa_timestamp,
       la.id, la.wamid, la.direction, la.type, la.body, la.status, la.wa_timestamp,
       c.unread_count, c.last_message_at, c.last_inbound_at, c.status, c.assignee,
       rt.state, rt.area_id, rt.assigned_at, c.created_at, c.updated_at`;
/** Where the sort key (the cursor's) sits in a row of CONVERSATION_COLUMNS. */
const COL_ID = 0;
const COL_LAST_MESSAGE_AT = 22;

type TextRow = (string | null)[];

/** Every column as the text Postgres sent: numbers' text is already JSON, times are rewritten by isoFromPg. */
const RAW_TEXT = { getTypeParser: () => (text: string) => text } as unknown as pg.CustomTypesConfig;

const str = (v: string | null | undefined) => (v == null ? 'null' : JSON.stringify(v));
const time = (v: string | null | undefined) => (v == null ? 'null' : `"${isoFromPg(v)}"`);

/** A message summary (`messageSummarySchema`) from the seven columns at `i`, or null. */
function writeSummary(r: TextRow, i: number): string {
  if (r[i] === null) return 'null';
  return `{"id":${r[i]},"wamid":${str(r[i + 1])},"direction":${str(r[i + 2])},"type":${str(r[i + 3])},"body":${str(r[i + 4])},"status":${str(r[i + 5])},"timestamp":${time(r[i + 6])}}`;
}

/** A keyset page as JSON: up to `limit` rows written by `write`; one row past it means there is a next page, from the last one's (time column, id). */
function pageJson(rows: TextRow[], limit: number, write: (r: TextRow) => string, timeCol: number): { json: string; rows: number } {
  const n = Math.min(rows.length, limit);
  let data = '';
  for (let i = 0; i < n; i++) data += (i ? ',' : '') + write(rows[i]!);
  const last = rows[n - 1];
  const nextCursor = rows.length > limit && last ? JSON.stringify(encode({ t: last[timeCol]!, id: Number(last[COL_ID]) })) : 'null';
  return { json: `{"data":[${data}],"nextCursor":${nextCursor}}`, rows: n };
}

/** A conversation as the API shows it (`conversationSchema`), from a row of CONVERSATION_COLUMNS. */
function writeConversation(r: TextRow): string {
  return `{"id":${r[0]},"channelId":${r[1]},"contact":{"id":${r[2]},"waId":${str(r[3])},"profileName":${str(r[4])},"userId":${str(r[5])},"username":${str(r[6])}},`
    + `"lastMessage":${writeSummary(r, 7)},"lastAgentMessage":${writeSummary(r, 14)},"unreadCount":${r[21]},"lastMessageAt":${time(r[22])},"lastInboundAt":${time(r[23])},`
    + `"status":${str(r[24])},"assignee":${str(r[25])},"route":{"state":${str(r[26] ?? 'menu')},"areaId":${r[27] ?? 'null'},"assignedAt":${time(r[28])}},`
    + `"createdAt":${time(r[29])},"updatedAt":${time(r[30])}}`;
}

/** A keyset page written as the API's JSON (`{ data, nextCursor }`: give nextCursor back as `cursor` for the next page), and how many rows it holds. */
export interface RenderedPage {
  readonly json: string;
  readonly rows: number;
}

/** The view's columns of the conversations `from` yields (a table or a subquery), aliased `c`. */
const conversationSelect = (from: string) => `
SELECT ${CONVERSATION_COLUMNS}
FROM ${from} c
JOIN contacts ct ON ct.id = c.contact_id
LEFT JOIN messages lm ON lm.id = c.last_message_id
LEFT JOIN messages la ON la.id = c.last_agent_message_id
LEFT JOIN conversation_routes rt ON rt.conversation_id = c.id`;

const CONVERSATION_SELECT = conversationSelect('conversations');

export interface ConversationFilter {
  readonly channelId?: number | undefined;
  readonly unread?: boolean | undefined;
  readonly areaId?: number | undefined;
  readonly status?: 'open' | 'closed' | undefined;
  readonly assignee?: string | undefined;
  /** A substring of the contact's name, number or username (case-insensitive). */
  readonly q?: string | undefined;
  /** Only conversations assigned to one of these areas (an area-limited token); null: any. */
  readonly areaIds?: readonly number[] | null | undefined;
  /** Rows only while this token is live (the request's token check, folded into the page's statement). */
  readonly liveToken?: number | undefined;
}

const likeEscape = (q: string) => q.replace(/[\\%_]/g, (ch) => `\\${ch}`);

/** The activity the inbox is ordered by, as conversations_recent_idx (012) indexes it: no message yet sorts last. */
const RECENT = `coalesce(c.last_message_at, '-infinity'::timestamptz)`;

/**
 * Newest activity first (RECENT DESC, id DESC: conversations_recent_idx and the per-filter
 * indexes of 012), the cursor one row comparison on that order. Filters combine with AND.
 */
export async function listConversations(pool: Pool, q: { limit: number; cursor: Position | null } & ConversationFilter): Promise<RenderedPage> {
  const where: string[] = [];
  const params: unknown[] = [];
  const p = (v: unknown) => `$${params.push(v)}`;
  if (q.cursor) where.push(`(${RECENT}, c.id) < (coalesce(${p(q.cursor.t)}::timestamptz, '-infinity'), ${p(q.cursor.id)})`);
  if (q.channelId !== undefined) where.push(`c.channel_id = ${p(q.channelId)}`);
  if (q.unread === true) where.push('c.unread_count > 0');
  if (q.unread === false) where.push('c.unread_count = 0');
  if (q.status !== undefined) where.push(`c.status = ${p(q.status)}`);
  if (q.assignee !== undefined) where.push(`c.assignee = ${p(q.assignee)}`);
  if (q.areaId !== undefined) where.push(`rt.state = 'assigned' AND rt.area_id = ${p(q.areaId)}`);
  if (q.areaIds) where.push(`rt.state = 'assigned' AND rt.area_id = ANY (${p(q.areaIds)}::bigint[])`);
  if (q.liveToken !== undefined) where.push(tokenLive(p(q.liveToken)));
  // The contact's searched text, lowercased on the conversation (026): LIKE of the lowercased
  // pattern matches exactly what ILIKE would, from conversations_search_trgm_idx or on the walk.
  if (q.q !== undefined) where.push(`c.search_text LIKE lower(${p(`%${likeEscape(q.q)}%`)})`);
  const routed = q.areaId !== undefined || q.areaIds ? 'JOIN conversation_routes rt ON rt.conversation_id = c.id' : '';
  // The page's rows first, joined to their contact, messages and route after: joined before the
  // LIMIT, a filter matching thousands (q=) made Postgres join all of them to sort out 50 (400 ms).
  // The LIMIT is written into the text, not passed: a prepared statement with LIMIT $n never gets
  // its generic plan (unknown row count: Postgres estimates it costlier than any custom plan), so
  // every run was planned again, half of Postgres's CPU per page. One text per limit a client uses.
  if (!Number.isSafeInteger(q.limit) || q.limit < 1) throw new RangeError(`limit ${q.limit}`);
  const pageRows = `SELECT c.* FROM conversations c ${routed} ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY ${RECENT} DESC, c.id DESC LIMIT ${q.limit + 1}`;
  const text = `${conversationSelect(`(${pageRows})`)} ORDER BY ${RECENT} DESC, c.id DESC`;
  // A search's best plan depends on its term (how many contacts match): planned for each one.
  // Every other mix of filters has one plan that suits all its values.
  const { rows } = await pool.query<TextRow>({ ...(q.q === undefined ? statement(pool, text, params) : { text, values: params }), types: RAW_TEXT, rowMode: 'array' as const });
  return pageJson(rows, q.limit, writeConversation, COL_LAST_MESSAGE_AT);
}

/** One conversation as the API's JSON; with `areaIds`, only when it is assigned to one of them. */
export async function findConversation(pool: Pool, id: number, areaIds: readonly number[] | null = null): Promise<string | null> {
  const { rows } = await pool.query<TextRow>(areaIds
    ? { text: `${CONVERSATION_SELECT} WHERE c.id = $1 AND rt.state = 'assigned' AND rt.area_id = ANY ($2::bigint[])`, values: [id, areaIds], types: RAW_TEXT, rowMode: 'array' as const }
    : { text: `${CONVERSATION_SELECT} WHERE c.id = $1`, values: [id], types: RAW_TEXT, rowMode: 'array' as const });
  return rows[0] ? writeConversation(rows[0]) : null;
}

export interface ConversationPatch {
  readonly status?: 'open' | 'closed' | undefined;
  /** null clears it; undefined leaves it. */
  readonly assignee?: string | null | undefined;
}

/**
 * Sets the lifecycle fields; the router's route is left as it is (closing is the agents'
 * bookkeeping, not a hand-off). Returns the channel, or null when there is no such conversation.
 */
export async function patchConversation(pool: Pool, id: number, patch: ConversationPatch): Promise<{ channelId: number; status: string; assignee: string | null } | null> {
  const { rows } = await pool.query<{ channel_id: number; status: string; assignee: string | null }>(
    `UPDATE conversations SET status = COALESCE($2, status), assignee = CASE WHEN $3 THEN $4 ELSE assignee END, updated_at = now()
     WHERE id = $1 RETURNING channel_id, status, assignee`,
    [id, patch.status ?? null, patch.assignee !== undefined, patch.assignee ?? null],
  );
  return rows[0] ? { channelId: rows[0].channel_id, status: rows[0].status, assignee: rows[0].assignee } : null;
}

/**
 * What a messages page shows (`messageItemSchema`), in the order writeMessageItem reads it: `m.*`
 * would also fetch `raw` (the webhook's JSON, the row's largest part), which Postgres detoasts for
 * every row only for the page to drop it.
 */
const MESSAGE_ITEM_COLUMNS = `m.id, m.wamid, m.channel_id, m.conversation_id, m.contact_id, c.wa_id, c.profile_name, c.user_id, c.username, m.direction, m.source, m.type, m.body,
  m.media_id, md.id, m.media_mime_type, m.media_sha256, m.media_filename, md.status, md.error_code, m.latitude, m.longitude, m.reply_to_wamid, m.reaction_to_wamid, m.reaction_emoji,
  m.interactive_reply_id, m.forwarded, m.referral, m.status, m.wa_timestamp, m.sent_at, m.delivered_at, m.read_at, m.failed_at, m.error_code, m.error_title, m.error_details, m.created_at`;
/** Where the sort key sits in a row of MESSAGE_ITEM_COLUMNS. */
const COL_WA_TIMESTAMP = 29;

/** A float8's text as JSON.stringify writes the number (NaN and infinities as null). */
const float = (v: string) => JSON.stringify(Number(v));

/** A message as a conversation's page lists it (`messageItemSchema`, as toView builds it), from a row of MESSAGE_ITEM_COLUMNS. */
function writeMessageItem(r: TextRow): string {
  const [id, wamid, channelId, conversationId, contactId, waId, profileName, userId, username, direction, source, type, body,
    mediaId, mediaRowId, mimeType, sha256, filename, mediaStatus, mediaError, latitude, longitude, replyTo, reactionTo, emoji,
    interactiveReplyId, forwarded, referral, status, timestamp, sentAt, deliveredAt, readAt, failedAt, errorCode, errorTitle, errorDetails, createdAt] = r;
  const media = mediaId || mimeType
    ? `{"id":${str(mediaId)},"mediaId":${mediaRowId ?? 'null'},"mimeType":${str(mimeType)},"sha256":${str(sha256)},"filename":${str(filename)},"status":${str(mediaStatus)},`
      + `"error":${str(mediaError)},"url":${str(mediaStatus && mediaStatus !== 'failed' ? mediaLink(Number(id)) : null)}}`
    : 'null';
  const location = latitude != null && longitude != null ? `{"latitude":${float(latitude)},"longitude":${float(longitude)}}` : 'null';
  const error = errorCode !== null || errorTitle !== null ? `{"code":${errorCode ?? 'null'},"title":${str(errorTitle)},"details":${str(errorDetails)}}` : 'null';
  return `{"id":${id},"wamid":${str(wamid)},"channelId":${channelId},"conversationId":${conversationId},`
    + `"contact":{"id":${contactId},"waId":${str(waId)},"profileName":${str(profileName)},"userId":${str(userId)},"username":${str(username)}},`
    + `"direction":${str(direction)},"source":${str(source)},"type":${str(type)},"body":${str(body)},"media":${media},"location":${location},"replyToWamid":${str(replyTo)},`
    + `"reaction":${type === 'reaction' ? `{"toWamid":${str(reactionTo)},"emoji":${str(emoji)}}` : 'null'},"interactiveReplyId":${str(interactiveReplyId)},`
    // jsonb's text spaces its JSON out; the API writes it compact.
    + `"forwarded":${forwarded === 't'},"referral":${referral == null ? 'null' : JSON.stringify(JSON.parse(referral))},"status":${str(status)},`
    + `"timestamp":${time(timestamp)},"sentAt":${time(sentAt)},"deliveredAt":${time(deliveredAt)},"readAt":${time(readAt)},"failedAt":${time(failedAt)},"error":${error},"createdAt":${time(createdAt)}}`;
}

/** A conversation's messages, newest first (`wa_timestamp DESC, id DESC`: messages_conversation_time_idx). */
export async function listConversationMessages(
  pool: Pool,
  conversationId: number,
  q: { limit: number; cursor: Position | null; liveToken?: number | undefined },
): Promise<RenderedPage> {
  const params: unknown[] = [conversationId, q.limit + 1];
  const p = (v: unknown) => `$${params.push(v)}`;
  const where = ['m.conversation_id = $1'];
  if (q.cursor) where.push(`(m.wa_timestamp, m.id) < (${p(q.cursor.t)}::timestamptz, ${p(q.cursor.id)})`);
  if (q.liveToken !== undefined) where.push(tokenLive(p(q.liveToken)));
  const { rows } = await pool.query<TextRow>({
    ...statement(
      pool,
      `SELECT ${MESSAGE_ITEM_COLUMNS} FROM messages m JOIN contacts c ON c.id = m.contact_id
     ${MEDIA_JOIN} WHERE ${where.join(' AND ')} ORDER BY m.wa_timestamp DESC, m.id DESC LIMIT $2`,
      params,
    ),
    types: RAW_TEXT,
    rowMode: 'array' as const,
  });
  return pageJson(rows, q.limit, writeMessageItem, COL_WA_TIMESTAMP);
}

/**
 * Clears the unread count. Returns the conversation's channel and the last inbound message's
 * wamid (for a read receipt), or null when there is no such conversation.
 */
export async function markConversationRead(pool: Pool, id: number): Promise<{ channelId: number; lastInboundWamid: string | null } | null> {
  const { rows } = await pool.query<{ channel_id: number; wamid: string | null }>(
    `UPDATE conversations c SET unread_count = 0, updated_at = CASE WHEN c.unread_count > 0 THEN now() ELSE c.updated_at END
     WHERE c.id = $1
     RETURNING c.channel_id,
       (SELECT m.wamid FROM messages m WHERE m.conversation_id = c.id AND m.direction = 'inbound' AND m.wamid IS NOT NULL
        ORDER BY m.wa_timestamp DESC, m.id DESC LIMIT 1) AS wamid`,
    [id],
  );
  return rows[0] ? { channelId: rows[0].channel_id, lastInboundWamid: rows[0].wamid } : null;
}

/** The area each of these conversations is assigned to; unassigned ones are absent. */
export async function assignedAreas(pool: Pool, conversationIds: readonly number[]): Promise<Map<number, number>> {
  const { rows } = await pool.query<{ conversation_id: number; area_id: number }>(
    "SELECT conversation_id, area_id FROM conversation_routes WHERE conversation_id = ANY ($1::bigint[]) AND state = 'assigned' AND area_id IS NOT NULL",
    [conversationIds],
  );
  return new Map(rows.map((r) => [r.conversation_id, r.area_id]));
}

/** Whether a conversation is assigned to one of `areaIds` (null: no limit, always true). */
export async function inAreas(pool: Pool, conversationId: number, areaIds: readonly number[] | null): Promise<boolean> {
  if (!areaIds) return true;
  const areas = await assignedAreas(pool, [conversationId]);
  return areaIds.includes(areas.get(conversationId) ?? -1);
}

/** The conversation of (channel, recipient key), if any: where a send to them lands. */
export async function conversationWith(pool: Pool, channelId: number, waId: string): Promise<number | null> {
  const { rows } = await pool.query<{ id: number }>('SELECT c.id FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE c.channel_id = $1 AND ct.wa_id = $2', [channelId, waId]);
  return rows[0]?.id ?? null;
}
