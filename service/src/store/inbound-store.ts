// Persists verified webhook events in bulk: one transaction and a handful of set-based
// statements per batch, whatever the number of events, messages and statuses in it.
import type { InboundMessage, InboundStatus, ParsedEvent } from '../whatsapp/parse.js';
import { withTransaction, type Pool, type PoolClient } from './pool.js';
import { messageIdFromCallback } from '../whatsapp/callback-data.js';
import { mergeConversationRouting } from '../router/routing/merge.js';

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
  /** The messages this batch inserted (each is new exactly once: realtime events, counters). */
  readonly newMessages: StoredMessage[];
  /**
   * Every message of the batch as stored: the new ones and those an earlier attempt or delivery
   * of it stored. What the router hears (it handles each message once), so a batch retried after
   * its messages committed is still routed.
   */
  readonly storedMessages: StoredMessage[];
  readonly statusChanges: StatusChange[];
}

export interface StoredMessage {
  readonly id: number;
  readonly wamid: string;
  readonly conversationId: number;
  readonly channelId: number;
  readonly type: string;
}

/**
 * Stores a batch in two or three autocommit statements, whatever its size (round trips,
 * not rows, are what cost on the hot path):
 *  1. contacts and conversations (idempotent upserts, harmless if the rest fails);
 *  2. the raw events, the messages of events not seen before, their conversations'
 *     counters and the statuses, atomically in one statement;
 *  3. when the batch has statuses, deriving their messages' status (idempotent).
 * Idempotent: events key on the body's hash, messages on wamid, statuses on (wamid, status).
 * A crash between 2 and 3 is healed by the retry, which runs 3 again.
 */
/**
 * `onMessages` hears the batch's new messages as soon as the statement storing them returns: with
 * a pool (a transaction per statement) they are committed then, before the batch's statuses,
 * wamid links and number changes take their own round trips.
 */
export async function storeInboundBatch(
  pool: Pool,
  events: readonly InboundEventRecord[],
  channels: ReadonlyMap<string, number>,
  onMessages?: (newMessages: InboundStoreResult['newMessages']) => void,
): Promise<InboundStoreResult> {
  const unique = new Map<string, InboundEventRecord>();
  for (const e of events) unique.set(e.sha256.toString('hex'), e);

  const people: Person[] = [];
  for (const e of unique.values()) {
    for (const m of e.parsed.messages) {
      const channelId = channels.get(m.phoneNumberId);
      if (channelId === undefined) continue;
      const c = e.parsed.contacts.get(m.from);
      people.push({ channel_id: channelId, wa_id: m.from, profile_name: c?.name ?? null, user_id: c?.userId ?? m.fromUserId, username: c?.username ?? null });
    }
  }
  const conversations = people.length > 0 ? await upsertPeople(pool, people) : new Map<string, { conversationId: number; contactId: number }>();

  const doc = { events: [] as unknown[], messages: [] as unknown[], statuses: [] as unknown[] };
  const applyWamids = new Set<string>();
  for (const [sha, e] of unique) {
    const ids = e.parsed.phoneNumberIds;
    doc.events.push({ sha, received_at: e.receivedAt.toISOString(), fields: e.parsed.fields, phone_number_ids: ids, unrouted: ids.some((p) => !channels.has(p)), routed: ids.some((p) => channels.has(p)), payload: e.raw, force: e.force === true });
    for (const m of e.parsed.messages) {
      const channelId = channels.get(m.phoneNumberId);
      if (channelId === undefined) continue;
      const conv = conversations.get(pairKey(channelId, m.from))!;
      doc.messages.push(messageRow(sha, m, channelId, conv.conversationId, conv.contactId));
    }
    for (const st of e.parsed.statuses) {
      doc.statuses.push(statusRow(sha, st));
      if (st.rank >= 0) applyWamids.add(st.wamid);
    }
  }
  // Three parameters, not one document: Postgres re-parses a json value at every ->.
  const { rows } = await pool.query<{ fresh: number; unrouted: number; statuses_inserted: number; new_messages: StoredMessage[]; known_messages: StoredMessage[] }>(STORE_SQL, [
    JSON.stringify(doc.events),
    JSON.stringify(doc.messages),
    JSON.stringify(doc.statuses),
  ]);
  const r = rows[0]!;
  if (r.new_messages.length > 0) onMessages?.(r.new_messages);
  // A status naming one of our messages in biz_opaque_callback_data gives it its wamid,
  // even when the sender crashed before saving it: that message is then never sent twice.
  const links = new Map<number, string>();
  for (const e of unique.values()) {
    for (const st of e.parsed.statuses) {
      const id = messageIdFromCallback(st.raw.biz_opaque_callback_data);
      if (id !== null) links.set(id, st.wamid);
    }
  }
  if (links.size > 0) {
    await pool.query(
      `UPDATE messages m SET wamid = l.wamid, ${REOPEN_SENDER_FAILED}
       FROM json_to_recordset($1::json) AS l(id bigint, wamid text)
       WHERE m.id = l.id AND m.direction = 'outbound' AND m.wamid IS NULL
         AND NOT EXISTS (SELECT 1 FROM messages o WHERE o.wamid = l.wamid)`,
      [JSON.stringify([...links].map(([id, wamid]) => ({ id, wamid })))],
    );
  }
  // A customer who changed number (or BSUID): their contact follows, so agents' replies go to the
  // new one and never to a number that may belong to someone else by now.
  const moves = identityChanges([...unique.values()].flatMap((e) => e.parsed.messages.filter((m) => channels.has(m.phoneNumberId))));
  if (moves.length > 0) await applyIdentityChanges(pool, moves);
  // Statuses only concern messages the business sent; a user's inbound message never has one.
  const statusChanges = applyWamids.size > 0 ? await applyStatuses(pool, [...applyWamids]) : [];
  return {
    events: unique.size,
    duplicateEvents: unique.size - r.fresh,
    unroutedEvents: r.unrouted,
    messagesInserted: r.new_messages.length,
    statusesInserted: r.statuses_inserted,
    newMessages: r.new_messages,
    storedMessages: [...r.new_messages, ...r.known_messages],
    statusChanges,
  };
}

/**
 * `system` messages `user_changed_number` (system.wa_id: the new number) and
 * `user_changed_user_id` (system.user_id: the new BSUID), as contact moves.
 */
const text = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

interface IdentityChange {
  readonly old_key: string;
  readonly new_wa_id: string | null;
  readonly new_user_id: string | null;
  /** When the change happened (the system message's timestamp). */
  readonly at: Date;
}

function identityChanges(messages: readonly InboundMessage[]): IdentityChange[] {
  const out: IdentityChange[] = [];
  for (const m of messages) {
    if (m.type !== 'system') continue;
    const sys = m.raw.system as { type?: unknown; wa_id?: unknown; user_id?: unknown } | undefined;
    const newWaId = sys?.type === 'user_changed_number' ? text(sys.wa_id) : null;
    const newUserId = sys?.type === 'user_changed_user_id' || sys?.type === 'user_changed_number' ? text(sys?.user_id) : null;
    if (newWaId !== null || newUserId !== null) out.push({ old_key: m.from, new_wa_id: newWaId !== m.from ? newWaId : null, new_user_id: newUserId, at: m.timestamp });
  }
  return out;
}

/**
 * Re-keys contacts to their new identity. Meta may deliver the new number's first message before
 * the change (or in the same batch), so a contact for the new number can exist already: when all
 * it has is from the change on (give or take clock skew), it is that same customer, and it is merged into the old contact
 * (its conversations and messages joined to the old ones) before the re-key. A contact with
 * anything older belongs to the number's previous owner and stays apart.
 * In one transaction, the conversations locked: a concurrent batch that still holds a deleted
 * conversation's id fails on its foreign key and runs again (see the inbound processor), resolving
 * the contact anew; one that holds a moved conversation stores under its new contact (STORE_SQL).
 */
async function applyIdentityChanges(pool: Pool, moves: readonly IdentityChange[]): Promise<void> {
  // One move per statement, in the order they happened: two changes of one contact in one UPDATE
  // would meet the same row twice, and Postgres applies only one of them.
  const ordered = [...moves].sort((a, b) => a.at.getTime() - b.at.getTime());
  await withTransaction(pool, async (client) => {
    for (const m of ordered) {
      for (let attempt = 1; ; attempt++) {
        if (m.new_wa_id !== null) await mergeEarlyContact(client, m.old_key, m.new_wa_id, m.at);
        const { rows } = await client.query<{ wa_id: string }>(REKEY_SQL, [JSON.stringify([m])]);
        // Not moved: the new number's contact was committed by a concurrent batch after the merge
        // looked for it. Merging now settles it (the merge locks it); the second pass is final,
        // since a contact the merge leaves apart (the number's previous owner) stays so.
        if (attempt > 1 || m.new_wa_id === null || rows.every((r) => r.wa_id === m.new_wa_id)) break;
      }
    }
  });
}

async function mergeEarlyContact(client: PoolClient, oldKey: string, newWaId: string, at: Date): Promise<void> {
  const { rows: people } = await client.query<{ id: string; wa_id: string }>('SELECT id, wa_id FROM contacts WHERE wa_id = ANY($1::text[]) ORDER BY id FOR UPDATE', [[oldKey, newWaId]]);
  const keep = people.find((p) => p.wa_id === oldKey)?.id;
  const gone = people.find((p) => p.wa_id === newWaId)?.id;
  if (keep === undefined || gone === undefined) return;
  const { rows: older } = await client.query(
    // Five minutes of slack for clocks: a number passes to a new owner after months, not minutes.
    `SELECT 1 FROM conversations c JOIN messages m ON m.conversation_id = c.id WHERE c.contact_id = $1 AND m.wa_timestamp < $2::timestamptz - interval '5 minutes' LIMIT 1`,
    [gone, at],
  );
  if (older.length > 0) return;
  const { rows: convs } = await client.query<{ id: string; channel_id: string; contact_id: string }>(
    'SELECT id, channel_id, contact_id FROM conversations WHERE contact_id = ANY($1::bigint[]) ORDER BY id FOR UPDATE',
    [[keep, gone]],
  );
  for (const g of convs.filter((c) => c.contact_id === gone)) {
    const k = convs.find((c) => c.contact_id === keep && c.channel_id === g.channel_id);
    if (!k) {
      await client.query('UPDATE conversations SET contact_id = $1, updated_at = now() WHERE id = $2', [keep, g.id]);
      await client.query('UPDATE messages SET contact_id = $1 WHERE conversation_id = $2', [keep, g.id]);
      continue;
    }
    await client.query('UPDATE messages SET conversation_id = $1, contact_id = $2 WHERE conversation_id = $3', [k.id, keep, g.id]);
    await client.query(
      `UPDATE conversations k SET unread_count = k.unread_count + g.unread_count,
         last_message_id = CASE WHEN k.last_message_at IS NULL OR g.last_message_at > k.last_message_at THEN g.last_message_id ELSE k.last_message_id END,
         last_message_at = GREATEST(k.last_message_at, g.last_message_at),
         last_inbound_at = GREATEST(k.last_inbound_at, g.last_inbound_at),
         last_agent_message_id = GREATEST(k.last_agent_message_id, g.last_agent_message_id),
         updated_at = now()
       FROM conversations g WHERE k.id = $1 AND g.id = $2`,
      [k.id, g.id],
    );
    await mergeConversationRouting(client, g.id, k.id);
    await client.query('DELETE FROM conversations WHERE id = $1', [g.id]);
  }
  await client.query(
    `UPDATE channel_contacts SET contact_id = $1 WHERE contact_id = $2
       AND channel_id NOT IN (SELECT channel_id FROM channel_contacts WHERE contact_id = $1)`,
    [keep, gone],
  );
  await client.query('DELETE FROM channel_contacts WHERE contact_id = $1', [gone]);
  await client.query(
    `UPDATE contacts k SET profile_name = COALESCE(g.profile_name, k.profile_name), user_id = COALESCE(g.user_id, k.user_id),
       username = COALESCE(g.username, k.username), updated_at = now()
     FROM contacts g WHERE k.id = $1 AND g.id = $2`,
    [keep, gone],
  );
  await client.query('DELETE FROM contacts WHERE id = $1', [gone]);
}

// Moves a contact from its old key to a new number (or, keyed on its BSUID, to a new BSUID): a
// number change, or a user first met by BSUID alone whose number is now given. Idempotent: a re-run
// finds the old key gone. A new number that already has a contact keeps its own (the old contact
// gets the BSUID only); a concurrent insert of it fails this statement and the job's retry settles.
// Returns each moved contact's key, so a caller sees whether the new number was taken meanwhile.
const REKEY_SQL = `
UPDATE contacts c SET
  wa_id = CASE
    WHEN x.new_wa_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM contacts n WHERE n.wa_id = x.new_wa_id) THEN x.new_wa_id
    -- Keyed on its BSUID (no number known): the key is the new BSUID.
    WHEN x.new_wa_id IS NULL AND x.new_user_id IS NOT NULL AND c.wa_id = c.user_id AND NOT EXISTS (SELECT 1 FROM contacts n WHERE n.wa_id = x.new_user_id) THEN x.new_user_id
    ELSE c.wa_id END,
  user_id = COALESCE(x.new_user_id, c.user_id),
  updated_at = now()
FROM json_to_recordset($1::json) AS x(old_key text, new_wa_id text, new_user_id text)
WHERE c.wa_id = x.old_key AND (x.new_wa_id IS NOT NULL OR x.new_user_id IS DISTINCT FROM c.user_id)
RETURNING c.wa_id`;

const pairKey = (channelId: number, waId: string) => `${channelId}:${waId}`;

/** A message's sender: its contact key (number, or BSUID without one) and what Meta told of it. */
interface Person {
  readonly channel_id: number;
  readonly wa_id: string;
  readonly profile_name: string | null;
  readonly user_id: string | null;
  readonly username: string | null;
}

/**
 * (channel, wa_id) → conversation and contact ids, creating what is missing and refreshing
 * changed profile names. A row another transaction inserted after our snapshot is neither
 * returned nor visible in the same statement, so those few are asked again (new snapshot).
 */
async function upsertPeople(pool: Pool, people: readonly Person[]): Promise<Map<string, { conversationId: number; contactId: number }>> {
  const out = new Map<string, { conversationId: number; contactId: number }>();
  let todo = people;
  for (let round = 0; round < 3 && todo.length > 0; round++) {
    // A user first met by BSUID alone whose number is now given is left out by PEOPLE_SQL: the
    // contact is re-keyed to the number here (keeping its conversations), then resolved.
    const moved = round > 0 ? todo.filter((p) => p.user_id !== null && p.user_id !== p.wa_id) : [];
    if (moved.length > 0) await pool.query(REKEY_SQL, [JSON.stringify(moved.map((p) => ({ old_key: p.user_id, new_wa_id: p.wa_id, new_user_id: p.user_id })))]);
    const { rows } = await pool.query<{ conversation_id: number; channel_id: number; contact_id: number; wa_id: string }>(PEOPLE_SQL, [JSON.stringify(todo)]);
    for (const r of rows) out.set(pairKey(r.channel_id, r.wa_id), { conversationId: r.conversation_id, contactId: r.contact_id });
    todo = todo.filter((p) => !out.has(pairKey(p.channel_id, p.wa_id)));
  }
  if (todo.length > 0) throw new Error(`could not resolve conversations for ${todo.length} contacts`);
  return out;
}

// Sorted inserts take row locks in one global order, so concurrent batches cannot deadlock.
// Contacts and conversations already stored as the batch gives them (nearly every message of a
// live conversation) are read, not proposed again: an ON CONFLICT DO UPDATE locks every row it
// conflicts with, WHERE clause or not (a WAL record and a dirtied page per contact, a write
// transaction and its commit flush per batch, and batches of one customer queued on the lock), and
// every proposed row draws a sequence value. In the usual batch this statement writes nothing.
// Nothing read here is locked: a number change's merge may move the conversation read to the
// customer's old contact and delete the contact read, before or while the batch stores. STORE_SQL
// takes each message's contact from its conversation once locked; a conversation the merge deleted
// (it had one on that channel already) fails the message insert's foreign key, and the batch runs
// again (see the inbound processor).
const PEOPLE_SQL = `
WITH input AS (SELECT * FROM json_to_recordset($1::json) AS r(channel_id bigint, wa_id text, profile_name text, user_id text, username text)),
-- Numbers whose contact is still keyed on their BSUID: re-keyed by REKEY_SQL, resolved next round.
moved AS (
  SELECT DISTINCT i.wa_id FROM input i JOIN contacts c ON c.wa_id = i.user_id
  WHERE i.user_id <> i.wa_id AND NOT EXISTS (SELECT 1 FROM contacts n WHERE n.wa_id = i.wa_id)),
ct_in AS (
  SELECT DISTINCT ON (wa_id) wa_id, profile_name, user_id, username FROM input
  WHERE wa_id NOT IN (SELECT wa_id FROM moved)
  ORDER BY wa_id, profile_name NULLS LAST, user_id NULLS LAST, username NULLS LAST),
-- Exactly the rows the upsert below would leave as they are.
ct_same AS (
  SELECT c.id, c.wa_id FROM contacts c JOIN ct_in i USING (wa_id)
  WHERE (i.profile_name IS NULL OR c.profile_name IS NOT DISTINCT FROM i.profile_name)
    AND (i.user_id IS NULL OR c.user_id IS NOT DISTINCT FROM i.user_id)
    AND (i.username IS NULL OR c.username IS NOT DISTINCT FROM i.username)),
ct_ins AS (
  INSERT INTO contacts (wa_id, profile_name, user_id, username)
  SELECT wa_id, profile_name, user_id, username FROM ct_in WHERE wa_id NOT IN (SELECT wa_id FROM ct_same) ORDER BY wa_id
  ON CONFLICT (wa_id) DO UPDATE SET profile_name = COALESCE(EXCLUDED.profile_name, contacts.profile_name),
      user_id = COALESCE(EXCLUDED.user_id, contacts.user_id), username = COALESCE(EXCLUDED.username, contacts.username), updated_at = now()
    WHERE (EXCLUDED.profile_name IS NOT NULL AND contacts.profile_name IS DISTINCT FROM EXCLUDED.profile_name)
       OR (EXCLUDED.user_id IS NOT NULL AND contacts.user_id IS DISTINCT FROM EXCLUDED.user_id)
       OR (EXCLUDED.username IS NOT NULL AND contacts.username IS DISTINCT FROM EXCLUDED.username)
  RETURNING id, wa_id),
ct AS (
  SELECT id, wa_id FROM ct_same
  UNION ALL
  SELECT id, wa_id FROM ct_ins
  UNION ALL
  SELECT c.id, c.wa_id FROM contacts c JOIN ct_in USING (wa_id)
  WHERE c.wa_id NOT IN (SELECT wa_id FROM ct_same) AND NOT EXISTS (SELECT 1 FROM ct_ins WHERE ct_ins.wa_id = c.wa_id)),
cv_in AS (SELECT DISTINCT i.channel_id, ct.id AS contact_id FROM input i JOIN ct USING (wa_id)),
cv_old AS (SELECT c.id, c.channel_id, c.contact_id FROM conversations c JOIN cv_in USING (channel_id, contact_id)),
cv_ins AS (
  INSERT INTO conversations (channel_id, contact_id)
  SELECT channel_id, contact_id FROM cv_in
  WHERE NOT EXISTS (SELECT 1 FROM cv_old o WHERE o.channel_id = cv_in.channel_id AND o.contact_id = cv_in.contact_id)
  ORDER BY channel_id, contact_id
  ON CONFLICT (channel_id, contact_id) DO NOTHING
  RETURNING id, channel_id, contact_id),
cv AS (
  SELECT id, channel_id, contact_id FROM cv_old
  UNION ALL
  SELECT id, channel_id, contact_id FROM cv_ins)
SELECT cv.id AS conversation_id, cv.channel_id, cv.contact_id, ct.wa_id FROM cv JOIN ct ON ct.id = cv.contact_id`;

// One statement, so the event log, the messages, their conversations and the statuses
// commit together or not at all: a retried job finds the event and skips its rows.
// An event kept unrouted is stored like a new one by whichever delivery first finds a channel for
// it (a replay, Meta's redelivery): its flag is cleared in the same statement that stores its rows,
// and the row lock makes a concurrent second delivery see it cleared.
const STORE_SQL = `
WITH ev_in AS (
  SELECT * FROM json_to_recordset($1::json)
    AS r(sha text, received_at timestamptz, fields json, phone_number_ids json, unrouted boolean, routed boolean, payload text, force boolean)),
ev_ins AS (
  INSERT INTO inbound_events AS e (body_sha256, received_at, fields, phone_number_ids, unrouted, payload)
  SELECT decode(sha, 'hex'), received_at, ARRAY(SELECT json_array_elements_text(fields)),
         ARRAY(SELECT json_array_elements_text(phone_number_ids)), unrouted, payload::json
  -- Sorted: batches sharing events lock their rows in one global order.
  FROM ev_in ORDER BY sha
  ON CONFLICT (body_sha256) DO UPDATE SET unrouted = EXCLUDED.unrouted, processed_at = now()
    WHERE e.unrouted AND (SELECT routed FROM ev_in WHERE ev_in.sha = encode(e.body_sha256, 'hex'))
  RETURNING encode(body_sha256, 'hex') AS sha, (xmax = 0) AS inserted),
ev_new AS (SELECT sha FROM ev_ins UNION SELECT sha FROM ev_in WHERE force),
msg_all AS MATERIALIZED (
  SELECT m.* FROM json_to_recordset($2::json) AS m(
    ev text, wamid text, channel_id bigint, conversation_id bigint, contact_id bigint, type text, body text,
    media_id text, media_mime_type text, media_sha256 text, media_filename text,
    latitude double precision, longitude double precision, reply_to_wamid text,
    reaction_to_wamid text, reaction_emoji text, interactive_reply_id text, forwarded boolean,
    referral jsonb, raw jsonb, wa_timestamp timestamptz)),
msg AS (SELECT * FROM msg_all WHERE ev IN (SELECT sha FROM ev_new)),
-- Each message's contact is its conversation's as it is once locked, not the one PEOPLE_SQL read:
-- a number change's merge may have moved the conversation to the customer's old contact and
-- deleted the one read (after that read, or while this statement waited on the merge's lock), and
-- messages.contact_id has no foreign key to refuse it. A locking read waits for the merge and
-- returns the row as committed; the statement's plain reads would still see the old version.
-- Only a lock: upd below changes these rows, once. A conversation the merge deleted returns
-- nothing, and the insert fails its foreign key (the batch runs again, resolving anew).
-- NO KEY UPDATE, the lock upd takes anyway (so the insert's foreign-key checks, which run after
-- the statement, find it held): about 4 WAL bytes per message. KEY SHARE would let a second batch
-- of the conversation insert before waiting, but a row the same transaction key-shares and then
-- updates cost about 60 WAL bytes more per message (bench/store-cost.ts, 2026-12-01).
cv_now AS MATERIALIZED (
  SELECT id, contact_id FROM conversations WHERE id IN (SELECT conversation_id FROM msg)
  -- Sorted: batches sharing conversations lock them in one global order.
  ORDER BY id FOR NO KEY UPDATE),
ins AS (
  INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, source, type, body,
    media_id, media_mime_type, media_sha256, media_filename, latitude, longitude, reply_to_wamid,
    reaction_to_wamid, reaction_emoji, interactive_reply_id, forwarded, referral, raw, wa_timestamp, status, status_rank)
  SELECT msg.wamid, msg.channel_id, msg.conversation_id, COALESCE(cv_now.contact_id, msg.contact_id), 'inbound', 'live', msg.type, msg.body,
    msg.media_id, msg.media_mime_type, msg.media_sha256, msg.media_filename, msg.latitude, msg.longitude, msg.reply_to_wamid,
    msg.reaction_to_wamid, msg.reaction_emoji, msg.interactive_reply_id, msg.forwarded, msg.referral, msg.raw, msg.wa_timestamp, 'received', 0
  FROM msg LEFT JOIN cv_now ON cv_now.id = msg.conversation_id
  ON CONFLICT (wamid) DO NOTHING
  RETURNING id, wamid, conversation_id, channel_id, type, wa_timestamp),
-- The batch's messages an earlier attempt or delivery stored: those of events seen before and
-- those the insert found taken. A batch retried after its messages committed still has them
-- routed; a batch of new messages looks nothing up.
known AS (
  SELECT s.id, s.wamid, s.conversation_id, s.channel_id, s.type FROM messages s
  WHERE s.direction = 'inbound' AND s.wamid IN (
    SELECT wamid FROM msg_all WHERE ev NOT IN (SELECT sha FROM ev_new)
    UNION ALL
    SELECT wamid FROM msg WHERE wamid NOT IN (SELECT wamid FROM ins))),
agg AS (
  SELECT DISTINCT ON (conversation_id) conversation_id, id AS last_id, wa_timestamp AS last_at,
         count(*) OVER (PARTITION BY conversation_id) AS n
  FROM ins ORDER BY conversation_id, wa_timestamp DESC, id DESC),
upd AS (
  -- Only rows really inserted count, so a redelivery never bumps unread twice. A new customer
  -- message reopens a closed conversation, here and not in another statement or CTE: one
  -- statement changes a row once (a second change of the same row would be silently dropped).
  UPDATE conversations c SET
    unread_count = c.unread_count + agg.n,
    status = 'open',
    last_message_id = CASE WHEN c.last_message_at IS NULL OR agg.last_at >= c.last_message_at THEN agg.last_id ELSE c.last_message_id END,
    last_message_at = GREATEST(c.last_message_at, agg.last_at),
    last_inbound_at = GREATEST(c.last_inbound_at, agg.last_at),
    updated_at = now()
  FROM agg WHERE c.id = agg.conversation_id),
st_ins AS (
  INSERT INTO message_statuses (wamid, status, status_rank, wa_timestamp, recipient_id, error_code, error_title, error_details, raw)
  SELECT wamid, status, status_rank, wa_timestamp, recipient_id, error_code, error_title, error_details, raw
  FROM json_to_recordset($3::json) AS s(ev text, wamid text, status text, status_rank smallint,
    wa_timestamp timestamptz, recipient_id text, error_code integer, error_title text, error_details text, raw jsonb)
  WHERE s.ev IN (SELECT sha FROM ev_new)
  ON CONFLICT (wamid, status) DO NOTHING
  RETURNING 1)
SELECT
  (SELECT count(*) FROM ev_ins)::int AS fresh,
  (SELECT count(*) FROM ev_in WHERE unrouted AND sha IN (SELECT sha FROM ev_ins WHERE inserted))::int AS unrouted,
  (SELECT count(*) FROM st_ins)::int AS statuses_inserted,
  (SELECT coalesce(json_agg(json_build_object('id', id, 'wamid', wamid, 'conversationId', conversation_id, 'channelId', channel_id, 'type', type)), '[]'::json) FROM ins) AS new_messages,
  (SELECT coalesce(json_agg(json_build_object('id', id, 'wamid', wamid, 'conversationId', conversation_id, 'channelId', channel_id, 'type', type)), '[]'::json) FROM known) AS known_messages`;

function messageRow(ev: string, m: InboundMessage, channelId: number, conversationId: number, contactId: number) {
  return {
    ev,
    wamid: m.wamid,
    channel_id: channelId,
    conversation_id: conversationId,
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
}

function statusRow(ev: string, s: InboundStatus) {
  return {
    ev,
    wamid: s.wamid,
    status: s.status,
    status_rank: s.rank,
    wa_timestamp: s.timestamp.toISOString(),
    recipient_id: s.recipientId,
    error_code: s.errorCode,
    error_title: s.errorTitle,
    error_details: s.errorDetails,
    raw: s.raw,
  };
}

/** A message whose status moved: what realtime clients are told. */
export interface StatusChange {
  readonly messageId: number;
  readonly wamid: string;
  readonly conversationId: number;
  readonly channelId: number;
  readonly status: string;
}

/**
 * The rest of the SET list that gives outbound row `m` Meta's wamid. A row failed without a
 * wamid was failed by our sender (retries ran out, the outcome stayed unknown), never by a
 * Meta status: Meta has the message after all, so it is reopened (pending with its wamid,
 * i.e. accepted), and the statuses applied next move it on instead of losing to rank 9.
 */
export const REOPEN_SENDER_FAILED = `accepted_at = COALESCE(m.accepted_at, now()), updated_at = now(),
  status = CASE WHEN m.wamid IS NULL AND m.status = 'failed' THEN 'pending' ELSE m.status END,
  status_rank = CASE WHEN m.wamid IS NULL AND m.status = 'failed' THEN 0 ELSE m.status_rank END,
  failed_at = CASE WHEN m.wamid IS NULL AND m.status = 'failed' THEN NULL ELSE m.failed_at END,
  error_code = CASE WHEN m.wamid IS NULL AND m.status = 'failed' THEN NULL ELSE m.error_code END,
  error_title = CASE WHEN m.wamid IS NULL AND m.status = 'failed' THEN NULL ELSE m.error_title END,
  error_details = CASE WHEN m.wamid IS NULL AND m.status = 'failed' THEN NULL ELSE m.error_details END`;

/**
 * Derives each message's status from its whole status history: the highest rank wins
 * (failed is terminal), each timestamp is the first report of that status. Order of
 * arrival cannot matter, and running it twice changes nothing.
 */
export async function applyStatuses(db: Pick<Pool, 'query'>, wamids: readonly string[]): Promise<StatusChange[]> {
  const res = await db.query<StatusChange>(
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
         OR (m.failed_at IS NULL AND agg.failed_at IS NOT NULL))
     RETURNING m.id AS "messageId", m.wamid, m.conversation_id AS "conversationId", m.channel_id AS "channelId", m.status`,
    [wamids],
  );
  return res.rows;
}
