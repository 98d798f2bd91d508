// Coexistence webhooks (a number used in the WhatsApp Business app and the Cloud API at once):
// `history` chunks, `smb_message_echoes` and `smb_app_state_sync`, parsed into plain rows.
import { parseMessageObject, type InboundMessage, type InvalidItem, type OtherChange } from '../whatsapp/parse.js';

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 ? v : typeof v === 'number' ? String(v) : null);
const int = (v: unknown, fallback: number): number => {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isFinite(n) ? Math.trunc(n) : fallback;
};

export const COEXISTENCE_FIELDS = new Set(['history', 'smb_message_echoes', 'smb_app_state_sync']);

/** An `edit` or `revoke` message: it changes another message instead of joining the timeline. */
export interface MessageChange {
  readonly kind: 'edit' | 'revoke';
  readonly targetWamid: string;
  /** For an edit: the new text (or caption). */
  readonly body: string | null;
}

/** The change an `edit` or `revoke` message makes, or null for any other message. */
export function changeOf(m: InboundMessage): MessageChange | null {
  if (m.type !== 'edit' && m.type !== 'revoke') return null;
  const c = isObj(m.raw[m.type]) ? (m.raw[m.type] as Json) : {};
  const target = str(c.original_message_id);
  if (!target) return null;
  if (m.type === 'revoke') return { kind: 'revoke', targetWamid: target, body: null };
  const next = isObj(c.message) ? c.message : {};
  const content = typeof next.type === 'string' && isObj(next[next.type]) ? (next[next.type] as Json) : {};
  return { kind: 'edit', targetWamid: target, body: str(content.body) ?? str(content.caption) };
}

/** A message of a history thread, with who the other party is and its status in the app. */
export interface HistoryRow {
  readonly message: InboundMessage;
  /** The customer's wa_id (the thread's id). */
  readonly waId: string;
  readonly direction: 'inbound' | 'outbound';
  /** history_context.status, lower-cased (`read`, `delivered`, ...). */
  readonly status: string;
  /** Set when the message edits or revokes another one. */
  readonly change: MessageChange | null;
}

export interface HistoryChunk {
  readonly phoneNumberId: string;
  readonly phase: number;
  readonly chunkOrder: number;
  readonly progress: number;
  readonly rows: HistoryRow[];
  /** Meta's errors on the chunk (e.g. 2593109: the business declined to share its history). */
  readonly errors: { code: number | null; message: string }[];
  readonly invalid: InvalidItem[];
}

function metadataOf(value: Json): { phoneNumberId: string; displayPhoneNumber: string | null } {
  const md = isObj(value.metadata) ? value.metadata : {};
  return { phoneNumberId: str(md.phone_number_id) ?? '', displayPhoneNumber: str(md.display_phone_number) };
}

const digits = (s: string | null) => (s ?? '').replace(/\D/g, '');

/** `history` change → its chunks (one per `history[]` item). */
export function parseHistory(change: OtherChange): HistoryChunk[] {
  const value = isObj(change.value) ? change.value : {};
  const { phoneNumberId, displayPhoneNumber } = metadataOf(value);
  const business = digits(displayPhoneNumber);
  return arr(value.history).map((h, hi) => {
    const item = isObj(h) ? h : {};
    const md = isObj(item.metadata) ? item.metadata : {};
    const invalid: InvalidItem[] = [];
    const rows: HistoryRow[] = [];
    arr(item.threads).forEach((t, ti) => {
      const thread = isObj(t) ? t : {};
      const waId = str(thread.id);
      arr(thread.messages).forEach((m, mi) => {
        const path = `history[${hi}].threads[${ti}].messages[${mi}]`;
        const msg = parseMessageObject(m, phoneNumberId, path, invalid);
        if (!msg) return;
        const raw = m as Json;
        const ctx = isObj(raw.history_context) ? raw.history_context : {};
        // Meta marks the business's own messages with `to` (its reference) or
        // history_context.from_me (seen in partners' captures); the sender's number says it too.
        // A username user's number may be withheld: `to_user_id` (their BSUID) stands for `to`.
        const to = str(raw.to) ?? str(raw.to_user_id);
        const fromBusiness = ctx.from_me === true || to !== null || (business !== '' && digits(msg.from) === business);
        const customer = waId ?? (fromBusiness ? to : msg.from);
        if (!customer) {
          invalid.push({ path, reason: 'no thread id to tell the customer' });
          return;
        }
        rows.push({ message: msg, waId: customer, direction: fromBusiness ? 'outbound' : 'inbound', status: (str(ctx.status) ?? 'delivered').toLowerCase(), change: changeOf(msg) });
      });
    });
    const errors = arr(item.errors).map((e) => {
      const o = isObj(e) ? e : {};
      return { code: typeof o.code === 'number' ? o.code : null, message: str(o.message) ?? str(o.title) ?? 'history error' };
    });
    return { phoneNumberId, phase: int(md.phase, 0), chunkOrder: int(md.chunk_order, 0), progress: int(md.progress, 0), rows, errors, invalid };
  });
}

export interface EchoRow {
  readonly message: InboundMessage;
  /** The customer the business wrote to. */
  readonly waId: string;
  /** Set for `edit` and `revoke` echoes. */
  readonly change: MessageChange | null;
}

/** `smb_message_echoes` change → messages the business sent from the app. */
export function parseEchoes(change: OtherChange): { phoneNumberId: string; rows: EchoRow[]; invalid: InvalidItem[] } {
  const value = isObj(change.value) ? change.value : {};
  const { phoneNumberId } = metadataOf(value);
  const invalid: InvalidItem[] = [];
  const rows: EchoRow[] = [];
  arr(value.message_echoes).forEach((e, i) => {
    const msg = parseMessageObject(e, phoneNumberId, `message_echoes[${i}]`, invalid);
    const raw = isObj(e) ? e : {};
    // The BSUID when Meta withholds the number of a user with a username.
    const to = str(raw.to) ?? str(raw.to_user_id);
    if (!msg) return;
    if (!to) {
      invalid.push({ path: `message_echoes[${i}]`, reason: 'echo lacks to (or to_user_id)' });
      return;
    }
    rows.push({ message: msg, waId: to, change: changeOf(msg) });
  });
  return { phoneNumberId, rows, invalid };
}

export interface StateSyncRow {
  readonly waId: string;
  /** `add` also means edited. */
  readonly action: 'add' | 'remove';
  readonly fullName: string | null;
  readonly firstName: string | null;
  /** When the business changed its contact book (Meta's timestamp): the latest change wins. */
  readonly at: Date;
}

/** `smb_app_state_sync` change → contact book changes. */
export function parseStateSync(change: OtherChange): { phoneNumberId: string; rows: StateSyncRow[] } {
  const value = isObj(change.value) ? change.value : {};
  const { phoneNumberId } = metadataOf(value);
  const rows: StateSyncRow[] = [];
  for (const it of arr(value.state_sync)) {
    const item = isObj(it) ? it : {};
    const contact = isObj(item.contact) ? item.contact : {};
    const waId = digits(str(contact.phone_number));
    if (item.type !== 'contact' || !waId) continue;
    const md = isObj(item.metadata) ? item.metadata : {};
    const ts = int(md.timestamp, 0);
    const at = new Date(ts * 1000);
    rows.push({ waId, action: item.action === 'remove' ? 'remove' : 'add', fullName: str(contact.full_name), firstName: str(contact.first_name), at: ts > 0 && !Number.isNaN(at.getTime()) ? at : new Date() });
  }
  return { phoneNumberId, rows };
}
