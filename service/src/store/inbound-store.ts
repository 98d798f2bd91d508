// Persists verified webhook events in bulk: one transaction and a handful of set-based
// statements per batch, whatever the number of events, messages and statuses in it.
import type { InboundMessage, InboundStatus, ParsedEvent } from '../whatsapp/parse.js';
import type { PoolClient } from './pool.js';

export interface InboundEventRecord {
  readonly sha256: Buffer;
  readonly receivedAt: Date;
  /** The body exactly as received (the bytes Meta signed). */
  readonly raw: string;
  readonly parsed: ParsedEvent;
  /** Store its rows even when the event was seen before (a dead-letter replay). */
  readonly force?: boolean;
}

export interface InboundStoreResult {
  readonly events: number;
  readonly duplicateEvents: number;
  readonly unroutedEvents: number;
  readonly messagesInserted: number;
  readonly statusesInserted: number;
  readonly newMessages: { id: number; wamid: string; conversationId: number }[];
}

/**
 * Stores a batch inside the caller's transaction. Idempotent: events are keyed by the
 * body's hash, messages by wamid and statuses by (wamid, status), so a redelivered
 * webhook or a retried job changes nothing.
 */
export async function storeInboundBatch(client: PoolClient, events: readonly InboundEventRecord[], channels: ReadonlyMap<string, number>): Promise<InboundStoreResult> {
  // 1. The raw event log decides which events are new; rows of known events were
  //    committed together with their event, so they are skipped.
  const unique = new Map<string, InboundEventRecord>();
  for (const e of events) unique.set(e.sha256.toString('hex'), e);
  const evRows = [...unique.values()].map((e) => ({
    sha: '\\x' + e.sha256.toString('hex'),
    received_at: e.receivedAt.toISOString(),
    fields: e.parsed.fields,
    phone_number_ids: e.parsed.phoneNumberIds,
    unrouted: e.parsed.phoneNumberIds.some((p) => !channels.has(p)),
    payload: e.raw,
  }));
  const inserted = await client.query<{ sha: string }>(
    `INSERT INTO inbound_events (body_sha256, received_at, fields, phone_number_ids, unrouted, payload)
     SELECT decode(substr(r.sha, 3), 'hex'), r.received_at, ARRAY(SELECT json_array_elements_text(r.fields)),
            ARRAY(SELECT json_array_elements_text(r.phone_number_ids)), r.unrouted, r.payload::json
     FROM json_to_recordset($1::json) AS r(sha text, received_at timestamptz, fields json, phone_number_ids json, unrouted boolean, payload text)
     ON CONFLICT (body_sha256) DO NOTHING
     RETURNING encode(body_sha256, 'hex') AS sha`,
    [JSON.stringify(evRows)],
  );
  const fresh = new Set(inserted.rows.map((r) => r.sha));
  const todo = [...unique.entries()].filter(([sha, e]) => fresh.has(sha) || e.force).map(([, e]) => e);

  const messages: InboundMessage[] = [];
  const statuses: InboundStatus[] = [];
  const contacts = new Map<string, string | null>();
  for (const e of todo) {
    for (const m of e.parsed.messages) {
      if (!channels.has(m.phoneNumberId)) continue;
      messages.push(m);
      const name = e.parsed.contacts.get(m.from) ?? null;
      if (name !== null || !contacts.has(m.from)) contacts.set(m.from, name);
    }
    // Statuses are kept whatever the channel: they key on wamid alone.
    statuses.push(...e.parsed.statuses);
  }

  let newMessages: InboundStoreResult['newMessages'] = [];
  if (messages.length > 0) {
    const contactIds = await upsertContacts(client, contacts);
    const conversationIds = await upsertConversations(
      client,
      messages.map((m) => ({ channelId: channels.get(m.phoneNumberId)!, contactId: contactIds.get(m.from)! })),
    );
    newMessages = await insertMessages(client, messages, channels, contactIds, conversationIds);
  }
  let statusesInserted = 0;
  if (statuses.length > 0) statusesInserted = await insertStatuses(client, statuses);
  // Apply statuses to their messages: those just reported, and those waiting for a message just stored.
  const touched = new Set<string>(statuses.map((s) => s.wamid));
  for (const m of newMessages) touched.add(m.wamid);
  if (statuses.length > 0 && touched.size > 0) await applyStatuses(client, [...touched]);

  return {
    events: unique.size,
    duplicateEvents: unique.size - fresh.size,
    unroutedEvents: evRows.filter((r) => r.unrouted && fresh.has(r.sha.slice(2))).length,
    messagesInserted: newMessages.length,
    statusesInserted,
    newMessages,
  };
}

/** wa_id → contact id; inserts new contacts, refreshes changed profile names. */
export async function upsertContacts(client: PoolClient, contacts: ReadonlyMap<string, string | null>): Promise<Map<string, number>> {
  // Sorted input locks rows in one global order: concurrent batches cannot deadlock here.
  const rows = [...contacts.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([wa_id, profile_name]) => ({ wa_id, profile_name }));
  const { rows: out } = await client.query<{ id: number; wa_id: string }>(
    `WITH input AS (SELECT * FROM json_to_recordset($1::json) AS r(wa_id text, profile_name text)),
     ins AS (
       INSERT INTO contacts (wa_id, profile_name) SELECT wa_id, profile_name FROM input ORDER BY wa_id
       ON CONFLICT (wa_id) DO UPDATE SET profile_name = EXCLUDED.profile_name, updated_at = now()
         WHERE EXCLUDED.profile_name IS NOT NULL AND contacts.profile_name IS DISTINCT FROM EXCLUDED.profile_name
       RETURNING id, wa_id)
     SELECT id, wa_id FROM ins
     UNION ALL
     SELECT c.id, c.wa_id FROM contacts c JOIN input USING (wa_id) WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.wa_id = c.wa_id)`,
    [JSON.stringify(rows)],
  );
  const ids = new Map(out.map((r) => [r.wa_id, r.id]));
  // A contact inserted by a concurrent transaction after our snapshot, with nothing to
  // update, is neither returned nor visible above; a new statement sees it.
  const missing = rows.filter((r) => !ids.has(r.wa_id)).map((r) => r.wa_id);
  if (missing.length > 0) {
    const { rows: late } = await client.query<{ id: number; wa_id: string }>('SELECT id, wa_id FROM contacts WHERE wa_id = ANY($1::text[])', [missing]);
    for (const r of late) ids.set(r.wa_id, r.id);
  }
  return ids;
}

const pairKey = (channelId: number, contactId: number) => `${channelId}:${contactId}`;

/** (channel, contact) → conversation id. Locks the rows (sorted) for the updates that follow. */
export async function upsertConversations(client: PoolClient, pairs: readonly { channelId: number; contactId: number }[]): Promise<Map<string, number>> {
  const unique = new Map<string, { channel_id: number; contact_id: number }>();
  for (const p of pairs) unique.set(pairKey(p.channelId, p.contactId), { channel_id: p.channelId, contact_id: p.contactId });
  const rows = [...unique.values()].sort((a, b) => a.channel_id - b.channel_id || a.contact_id - b.contact_id);
  const { rows: out } = await client.query<{ id: number; channel_id: number; contact_id: number }>(
    `INSERT INTO conversations (channel_id, contact_id)
     SELECT channel_id, contact_id FROM json_to_recordset($1::json) AS r(channel_id bigint, contact_id bigint) ORDER BY channel_id, contact_id
     ON CONFLICT (channel_id, contact_id) DO UPDATE SET updated_at = now()
     RETURNING id, channel_id, contact_id`,
    [JSON.stringify(rows)],
  );
  return new Map(out.map((r) => [pairKey(r.channel_id, r.contact_id), r.id]));
}

async function insertMessages(
  client: PoolClient,
  messages: readonly InboundMessage[],
  channels: ReadonlyMap<string, number>,
  contactIds: ReadonlyMap<string, number>,
  conversationIds: ReadonlyMap<string, number>,
): Promise<InboundStoreResult['newMessages']> {
  const rows = messages.map((m) => {
    const channelId = channels.get(m.phoneNumberId)!;
    const contactId = contactIds.get(m.from)!;
    return {
      wamid: m.wamid,
      channel_id: channelId,
      conversation_id: conversationIds.get(pairKey(channelId, contactId))!,
      contact_id: contactId,
      type: m.type,
      body: m.body,
      media_id: m.mediaId,
      media_mime_type: m.mediaMimeType,
      media_sha256: m.mediaSha256,
      media_filename: m.mediaFilename,
      latitude: m.latitude,
      longitude: m.longitude,
      reply_to_wamid: m.replyToWamid,
      reaction_to_wamid: m.reactionToWamid,
      reaction_emoji: m.reactionEmoji,
      interactive_reply_id: m.interactiveReplyId,
      forwarded: m.forwarded,
      referral: m.referral,
      raw: m.raw,
      wa_timestamp: m.timestamp.toISOString(),
    };
  });
  // One statement inserts the messages and folds them into their conversations:
  // only rows really inserted count, so a redelivery never bumps unread twice.
  const { rows: out } = await client.query<{ id: number; wamid: string; conversation_id: number }>(
    `WITH input AS (
       SELECT * FROM json_to_recordset($1::json) AS r(
         wamid text, channel_id bigint, conversation_id bigint, contact_id bigint, type text, body text,
         media_id text, media_mime_type text, media_sha256 text, media_filename text,
         latitude double precision, longitude double precision, reply_to_wamid text,
         reaction_to_wamid text, reaction_emoji text, interactive_reply_id text, forwarded boolean,
         referral jsonb, raw jsonb, wa_timestamp timestamptz)),
     ins AS (
       INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, source, type, body,
         media_id, media_mime_type, media_sha256, media_filename, latitude, longitude, reply_to_wamid,
         reaction_to_wamid, reaction_emoji, interactive_reply_id, forwarded, referral, raw, wa_timestamp, status, status_rank)
       SELECT wamid, channel_id, conversation_id, contact_id, 'inbound', 'live', type, body,
         media_id, media_mime_type, media_sha256, media_filename, latitude, longitude, reply_to_wamid,
         reaction_to_wamid, reaction_emoji, interactive_reply_id, forwarded, referral, raw, wa_timestamp, 'received', 0
       FROM input
       ON CONFLICT (wamid) DO NOTHING
       RETURNING id, wamid, conversation_id, wa_timestamp),
     agg AS (
       SELECT DISTINCT ON (conversation_id) conversation_id, id AS last_id, wa_timestamp AS last_at,
              count(*) OVER (PARTITION BY conversation_id) AS n
       FROM ins ORDER BY conversation_id, wa_timestamp DESC, id DESC),
     upd AS (
       UPDATE conversations c SET
         unread_count = c.unread_count + agg.n,
         last_message_id = CASE WHEN c.last_message_at IS NULL OR agg.last_at >= c.last_message_at THEN agg.last_id ELSE c.last_message_id END,
         last_message_at = GREATEST(c.last_message_at, agg.last_at),
         last_inbound_at = GREATEST(c.last_inbound_at, agg.last_at),
         updated_at = now()
       FROM agg WHERE c.id = agg.conversation_id)
     SELECT id, wamid, conversation_id FROM ins`,
    [JSON.stringify(rows)],
  );
  return out.map((r) => ({ id: r.id, wamid: r.wamid, conversationId: r.conversation_id }));
}

async function insertStatuses(client: PoolClient, statuses: readonly InboundStatus[]): Promise<number> {
  const rows = statuses.map((s) => ({
    wamid: s.wamid,
    status: s.status,
    status_rank: s.rank,
    wa_timestamp: s.timestamp.toISOString(),
    recipient_id: s.recipientId,
    error_code: s.errorCode,
    error_title: s.errorTitle,
    error_details: s.errorDetails,
    raw: s.raw,
  }));
  const res = await client.query(
    `INSERT INTO message_statuses (wamid, status, status_rank, wa_timestamp, recipient_id, error_code, error_title, error_details, raw)
     SELECT wamid, status, status_rank, wa_timestamp, recipient_id, error_code, error_title, error_details, raw
     FROM json_to_recordset($1::json) AS r(wamid text, status text, status_rank smallint, wa_timestamp timestamptz,
       recipient_id text, error_code integer, error_title text, error_details text, raw jsonb)
     ON CONFLICT (wamid, status) DO NOTHING`,
    [JSON.stringify(rows)],
  );
  return res.rowCount ?? 0;
}

/**
 * Derives each message's status from its whole status history: the highest rank wins
 * (failed is terminal), each timestamp is the first report of that status. Order of
 * arrival cannot matter, and running it twice changes nothing.
 */
export async function applyStatuses(client: PoolClient, wamids: readonly string[]): Promise<number> {
  const res = await client.query(
    `WITH agg AS (
       SELECT wamid,
              max(status_rank) AS rank,
              (array_agg(status ORDER BY status_rank DESC, wa_timestamp))[1] AS status,
              min(wa_timestamp) FILTER (WHERE status = 'sent') AS sent_at,
              min(wa_timestamp) FILTER (WHERE status = 'delivered') AS delivered_at,
              min(wa_timestamp) FILTER (WHERE status = 'read') AS read_at,
              min(wa_timestamp) FILTER (WHERE status = 'failed') AS failed_at,
              (array_agg(error_code) FILTER (WHERE status = 'failed'))[1] AS error_code,
              (array_agg(error_title) FILTER (WHERE status = 'failed'))[1] AS error_title,
              (array_agg(error_details) FILTER (WHERE status = 'failed'))[1] AS error_details
       FROM message_statuses WHERE wamid = ANY($1::text[]) AND status_rank >= 0
       GROUP BY wamid)
     UPDATE messages m SET
       status = CASE WHEN agg.rank > m.status_rank THEN agg.status ELSE m.status END,
       status_rank = GREATEST(m.status_rank, agg.rank),
       sent_at = COALESCE(m.sent_at, agg.sent_at),
       delivered_at = COALESCE(m.delivered_at, agg.delivered_at),
       read_at = COALESCE(m.read_at, agg.read_at),
       failed_at = COALESCE(m.failed_at, agg.failed_at),
       error_code = COALESCE(m.error_code, agg.error_code),
       error_title = COALESCE(m.error_title, agg.error_title),
       error_details = COALESCE(m.error_details, agg.error_details),
       updated_at = now()
     FROM agg
     WHERE m.wamid = agg.wamid
       AND (agg.rank > m.status_rank
         OR (m.sent_at IS NULL AND agg.sent_at IS NOT NULL)
         OR (m.delivered_at IS NULL AND agg.delivered_at IS NOT NULL)
         OR (m.read_at IS NULL AND agg.read_at IS NOT NULL)
         OR (m.failed_at IS NULL AND agg.failed_at IS NOT NULL))`,
    [wamids],
  );
  return res.rowCount ?? 0;
}
