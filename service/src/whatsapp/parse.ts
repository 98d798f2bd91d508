// Webhook envelope → normalized rows. Lenient about fields Meta adds, strict about the
// ones we key on (ids, timestamps): an item without them is reported, never guessed.
import { statusRank } from './statuses.js';

export const WABA_OBJECT = 'whatsapp_business_account';

type Json = Record<string, unknown>;

export interface InboundMessage {
  readonly phoneNumberId: string;
  readonly wamid: string;
  /**
   * Who sent it, the key of its contact: the phone number (`from`), or the business-scoped user
   * id (`from_user_id`) when Meta withholds the number of a user with a username.
   */
  readonly from: string;
  /** The sender's business-scoped user id (BSUID) when Meta sends one. */
  readonly fromUserId: string | null;
  readonly profileName: string | null;
  readonly type: string;
  readonly timestamp: Date;
  readonly body: string | null;
  readonly mediaId: string | null;
  readonly mediaMimeType: string | null;
  readonly mediaSha256: string | null;
  readonly mediaFilename: string | null;
  readonly latitude: number | null;
  readonly longitude: number | null;
  readonly replyToWamid: string | null;
  readonly reactionToWamid: string | null;
  readonly reactionEmoji: string | null;
  readonly interactiveReplyId: string | null;
  readonly forwarded: boolean;
  readonly referral: Json | null;
  readonly raw: Json;
}

export interface InboundStatus {
  readonly phoneNumberId: string;
  readonly wamid: string;
  readonly status: string;
  readonly rank: number;
  readonly timestamp: Date;
  /** The recipient's phone number, or its BSUID when Meta withholds the number. */
  readonly recipientId: string | null;
  readonly recipientUserId: string | null;
  readonly errorCode: number | null;
  readonly errorTitle: string | null;
  readonly errorDetails: string | null;
  readonly raw: Json;
}

/** A change whose field is not `messages` (history, echoes, app state, account updates, ...). */
export interface OtherChange {
  readonly field: string;
  readonly wabaId: string | null;
  readonly value: Json;
}

export interface InvalidItem {
  readonly path: string;
  readonly reason: string;
}

/** What `contacts[]` says of a user. */
export interface ContactInfo {
  readonly name: string | null;
  /** Business-scoped user id (2026): present whether or not the phone number is. */
  readonly userId: string | null;
  readonly username: string | null;
}

export interface ParsedEvent {
  readonly messages: InboundMessage[];
  readonly statuses: InboundStatus[];
  /** Contact key (wa_id, or user_id when Meta withholds the number) → what `contacts[]` says. */
  readonly contacts: Map<string, ContactInfo>;
  readonly phoneNumberIds: string[];
  readonly fields: string[];
  readonly other: OtherChange[];
  /** `value.errors[]` Meta attached to a change (not to a message). */
  readonly webhookErrors: Json[];
  readonly invalid: InvalidItem[];
}

export class EnvelopeError extends Error {
  override readonly name = 'EnvelopeError';
}

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 ? v : typeof v === 'number' ? String(v) : null);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const num = (v: unknown): number | null => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : null;
};

// Past year 9999 toISOString writes "+010000-…", which Postgres refuses: the item is invalid, so
// it cannot make the statement storing its valid neighbours fail.
const LAST_STORABLE_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/** Meta sends unix seconds as a string. One past what Postgres stores is reported, not thrown later. */
function unixSeconds(v: unknown): Date | null {
  const n = num(v);
  if (n === null || n <= 0 || n * 1000 > LAST_STORABLE_MS) return null;
  return new Date(n * 1000);
}

/** The cheap structural check the webhook does before acking: a WABA envelope with entries. */
export function checkEnvelope(body: unknown): asserts body is { object: string; entry: unknown[] } {
  if (!isObj(body)) throw new EnvelopeError('body is not a JSON object');
  if (body.object !== WABA_OBJECT) throw new EnvelopeError(`object must be "${WABA_OBJECT}"`);
  if (!Array.isArray(body.entry)) throw new EnvelopeError('entry must be an array');
}

const MEDIA_TYPES = new Set(['image', 'audio', 'video', 'document', 'sticker']);

function messageContent(type: string, m: Json): Pick<InboundMessage, 'body' | 'mediaId' | 'mediaMimeType' | 'mediaSha256' | 'mediaFilename' | 'latitude' | 'longitude' | 'reactionToWamid' | 'reactionEmoji' | 'interactiveReplyId'> {
  const out = {
    body: null as string | null,
    mediaId: null as string | null,
    mediaMimeType: null as string | null,
    mediaSha256: null as string | null,
    mediaFilename: null as string | null,
    latitude: null as number | null,
    longitude: null as number | null,
    reactionToWamid: null as string | null,
    reactionEmoji: null as string | null,
    interactiveReplyId: null as string | null,
  };
  const c = isObj(m[type]) ? (m[type] as Json) : {};
  if (type === 'text') {
    out.body = str(c.body);
  } else if (MEDIA_TYPES.has(type)) {
    out.mediaId = str(c.id);
    out.mediaMimeType = str(c.mime_type);
    out.mediaSha256 = str(c.sha256);
    out.mediaFilename = str(c.filename);
    out.body = str(c.caption);
  } else if (type === 'location') {
    out.latitude = num(c.latitude);
    out.longitude = num(c.longitude);
    out.body = [str(c.name), str(c.address)].filter(Boolean).join(', ') || null;
  } else if (type === 'contacts') {
    const first = arr(m.contacts)[0];
    const name = isObj(first) && isObj(first.name) ? str(first.name.formatted_name) : null;
    out.body = name;
  } else if (type === 'interactive') {
    const kind = str(c.type);
    const reply = kind && isObj(c[kind]) ? (c[kind] as Json) : {};
    out.interactiveReplyId = str(reply.id);
    out.body = str(reply.title) ?? str(reply.body) ?? str(reply.description);
  } else if (type === 'button') {
    out.body = str(c.text);
    out.interactiveReplyId = str(c.payload);
  } else if (type === 'reaction') {
    out.reactionToWamid = str(c.message_id);
    // A removed reaction arrives without an emoji.
    out.reactionEmoji = str(c.emoji);
  } else if (type === 'order') {
    out.body = str(c.text);
  } else if (type === 'system') {
    out.body = str(c.body);
  }
  return out;
}

function parseMessage(m: unknown, phoneNumberId: string, contacts: ReadonlyMap<string, ContactInfo>, path: string, invalid: InvalidItem[]): InboundMessage | null {
  if (!isObj(m)) {
    invalid.push({ path, reason: 'message is not an object' });
    return null;
  }
  const wamid = str(m.id);
  const fromUserId = str(m.from_user_id);
  // A username user's number is omitted unless the business knows it: the BSUID keys them then.
  const from = str(m.from) ?? fromUserId;
  const type = str(m.type);
  const timestamp = unixSeconds(m.timestamp);
  const missing = [!wamid && 'id', !from && 'from (or from_user_id)', !type && 'type', !timestamp && 'timestamp'].filter(Boolean);
  if (missing.length > 0 || !wamid || !from || !type || !timestamp) {
    invalid.push({ path, reason: `message lacks ${missing.join(', ')}` });
    return null;
  }
  const context = isObj(m.context) ? m.context : null;
  return {
    phoneNumberId,
    wamid,
    from,
    fromUserId,
    profileName: (contacts.get(from) ?? (fromUserId !== null ? contacts.get(fromUserId) : undefined))?.name ?? null,
    type,
    timestamp,
    ...messageContent(type, m),
    replyToWamid: context ? str(context.id) : null,
    forwarded: context ? context.forwarded === true || context.frequently_forwarded === true : false,
    referral: isObj(m.referral) ? m.referral : null,
    raw: m,
  };
}

/**
 * One message object outside `messages[]` (history threads, echoes): same fields, same rules.
 * `from` is whoever sent it (the business number for its own messages).
 */
export function parseMessageObject(m: unknown, phoneNumberId: string, path: string, invalid: InvalidItem[]): InboundMessage | null {
  return parseMessage(m, phoneNumberId, new Map(), path, invalid);
}

function parseStatus(s: unknown, phoneNumberId: string, path: string, invalid: InvalidItem[]): InboundStatus | null {
  if (!isObj(s)) {
    invalid.push({ path, reason: 'status is not an object' });
    return null;
  }
  const wamid = str(s.id);
  const status = str(s.status);
  const timestamp = unixSeconds(s.timestamp);
  if (!wamid || !status || !timestamp) {
    const missing = [!wamid && 'id', !status && 'status', !timestamp && 'timestamp'].filter(Boolean);
    invalid.push({ path, reason: `status lacks ${missing.join(', ')}` });
    return null;
  }
  const err = arr(s.errors).find(isObj);
  const errData = err && isObj(err.error_data) ? err.error_data : null;
  return {
    phoneNumberId,
    wamid,
    status,
    rank: statusRank(status),
    timestamp,
    recipientId: str(s.recipient_id) ?? str(s.recipient_user_id),
    recipientUserId: str(s.recipient_user_id),
    errorCode: err ? num(err.code) : null,
    errorTitle: err ? (str(err.title) ?? str(err.message)) : null,
    errorDetails: errData ? str(errData.details) : err ? str(err.message) : null,
    raw: s,
  };
}

/** What two mentions of one user say together: the newer value of each field Meta sent. */
function mergeContact(a: ContactInfo | undefined, b: ContactInfo): ContactInfo {
  if (!a) return b;
  return { name: b.name ?? a.name, userId: b.userId ?? a.userId, username: b.username ?? a.username };
}

/** Every entry, every change, every message and status: nothing past the first is skipped. */
export function parseEvent(body: unknown): ParsedEvent {
  checkEnvelope(body);
  const out: ParsedEvent = { messages: [], statuses: [], contacts: new Map(), phoneNumberIds: [], fields: [], other: [], webhookErrors: [], invalid: [] };
  const phoneIds = new Set<string>();
  const fields = new Set<string>();
  body.entry.forEach((entry, ei) => {
    if (!isObj(entry)) {
      out.invalid.push({ path: `entry[${ei}]`, reason: 'entry is not an object' });
      return;
    }
    const wabaId = str(entry.id);
    arr(entry.changes).forEach((change, ci) => {
      const path = `entry[${ei}].changes[${ci}]`;
      if (!isObj(change) || !isObj(change.value)) {
        out.invalid.push({ path, reason: 'change has no value object' });
        return;
      }
      const field = str(change.field) ?? 'messages';
      fields.add(field);
      const value = change.value;
      if (field !== 'messages') {
        out.other.push({ field, wabaId, value });
        const meta = isObj(value.metadata) ? value.metadata : null;
        const pid = meta ? str(meta.phone_number_id) : null;
        if (pid) phoneIds.add(pid);
        return;
      }
      const meta = isObj(value.metadata) ? value.metadata : null;
      const phoneNumberId = meta ? str(meta.phone_number_id) : null;
      if (!phoneNumberId) {
        out.invalid.push({ path, reason: 'value.metadata.phone_number_id missing' });
        return;
      }
      phoneIds.add(phoneNumberId);
      const localContacts = new Map<string, ContactInfo>();
      for (const c of arr(value.contacts)) {
        if (!isObj(c)) continue;
        const userId = str(c.user_id);
        const key = str(c.wa_id) ?? userId;
        if (!key) continue;
        const profile = isObj(c.profile) ? c.profile : {};
        const info: ContactInfo = { name: str(profile.name), userId, username: str(profile.username) };
        localContacts.set(key, info);
        // A message keyed on its number still finds the contact by its BSUID, and the reverse.
        if (userId !== null && userId !== key) localContacts.set(userId, info);
        out.contacts.set(key, mergeContact(out.contacts.get(key), info));
      }
      arr(value.messages).forEach((m, mi) => {
        const msg = parseMessage(m, phoneNumberId, localContacts, `${path}.value.messages[${mi}]`, out.invalid);
        if (msg) {
          out.messages.push(msg);
          const known = localContacts.get(msg.from) ?? (msg.fromUserId !== null ? localContacts.get(msg.fromUserId) : undefined);
          out.contacts.set(msg.from, mergeContact(out.contacts.get(msg.from), known ?? { name: null, userId: msg.fromUserId, username: null }));
        }
      });
      arr(value.statuses).forEach((s, si) => {
        const st = parseStatus(s, phoneNumberId, `${path}.value.statuses[${si}]`, out.invalid);
        if (st) out.statuses.push(st);
      });
      for (const e of arr(value.errors)) if (isObj(e)) out.webhookErrors.push(e);
    });
  });
  out.phoneNumberIds.push(...phoneIds);
  out.fields.push(...fields);
  return out;
}

// Postgres text and jsonb hold neither NUL nor a lone UTF-16 surrogate, and one such string
// fails the whole statement. In a body that passed JSON.parse they can only come from escapes
// (raw control characters are invalid JSON, and the bytes were decoded as well-formed UTF-8),
// so a body without such an escape skips the walk.
const UNSTORABLE_ESCAPE = /\\u(?:0000|[dD][89a-fA-F])/;
// eslint-disable-next-line no-control-regex -- NUL is exactly what has to go
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * JSON.parse, then every string (keys too) made storable: NUL removed, a lone surrogate replaced
 * with U+FFFD. `repaired` counts the strings changed; when it is 0, `body` is what JSON.parse gave.
 */
export function parseBody(text: string): { body: unknown; repaired: number } {
  const body: unknown = JSON.parse(text);
  if (!UNSTORABLE_ESCAPE.test(text)) return { body, repaired: 0 };
  let repaired = 0;
  const fix = (s: string): string => {
    const out = s.replace(UNSTORABLE, (c) => (c === '\u0000' ? '' : '\ufffd'));
    if (out !== s) repaired++;
    return out;
  };
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return fix(v);
    if (Array.isArray(v)) return v.map(walk);
    // fromEntries defines own properties: a "__proto__" key stays data, never a prototype.
    if (isObj(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [fix(k), walk(x)]));
    return v;
  };
  return { body: walk(body), repaired };
}
