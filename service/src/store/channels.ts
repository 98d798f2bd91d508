// Channels (our WhatsApp numbers), looked up by phone_number_id on every inbound batch.
import type { Config } from '../config/env.js';
import type { Pool } from './pool.js';
import type { ChannelForSend } from './outbound-store.js';

export interface ChannelRow {
  readonly id: number;
  readonly phoneNumberId: string;
}

export interface BootstrapChannel {
  readonly phoneNumberId: string;
  readonly accessToken: string;
  readonly wabaId?: string | undefined;
  readonly displayPhoneNumber?: string | undefined;
}

/** Creates or refreshes the channel configured by environment (WHATSAPP_PHONE_NUMBER_ID). */
export async function upsertBootstrapChannel(pool: Pool, ch: BootstrapChannel): Promise<number> {
  const { rows } = await pool.query<{ id: number }>(
    `INSERT INTO channels (phone_number_id, access_token, waba_id, display_phone_number, name)
     VALUES ($1, $2, $3, $4, 'bootstrap')
     ON CONFLICT (phone_number_id) DO UPDATE SET
       access_token = EXCLUDED.access_token,
       waba_id = COALESCE(EXCLUDED.waba_id, channels.waba_id),
       display_phone_number = COALESCE(EXCLUDED.display_phone_number, channels.display_phone_number),
       updated_at = now()
     RETURNING id`,
    [ch.phoneNumberId, ch.accessToken, ch.wabaId ?? null, ch.displayPhoneNumber ?? null],
  );
  return rows[0]!.id;
}

/**
 * phone_number_id → channel id, cached. Misses are cached briefly so a burst for an
 * unknown number does not hammer the database, yet a new channel is seen within seconds.
 */
export class ChannelResolver {
  private readonly hits = new Map<string, { id: number; until: number }>();
  private readonly misses = new Map<string, number>();

  constructor(
    private readonly pool: Pool,
    private readonly ttlMs = 60_000,
    private readonly missTtlMs = 2_000,
  ) {}

  async resolve(phoneNumberIds: Iterable<string>): Promise<Map<string, number>> {
    const now = Date.now();
    const out = new Map<string, number>();
    const lookup: string[] = [];
    for (const pid of new Set(phoneNumberIds)) {
      const hit = this.hits.get(pid);
      if (hit && hit.until > now) out.set(pid, hit.id);
      else if ((this.misses.get(pid) ?? 0) <= now) lookup.push(pid);
    }
    if (lookup.length > 0) {
      const { rows } = await this.pool.query<{ id: number; phone_number_id: string }>('SELECT id, phone_number_id FROM channels WHERE phone_number_id = ANY($1::text[])', [lookup]);
      for (const r of rows) {
        out.set(r.phone_number_id, r.id);
        this.hits.set(r.phone_number_id, { id: r.id, until: now + this.ttlMs });
        this.misses.delete(r.phone_number_id);
      }
      for (const pid of lookup) if (!out.has(pid)) this.misses.set(pid, now + this.missTtlMs);
    }
    return out;
  }

  forget(phoneNumberId: string): void {
    this.hits.delete(phoneNumberId);
    this.misses.delete(phoneNumberId);
  }
}

/** An event kept unrouted, as stored: its hash is the key a replay must store it under. */
export interface UnroutedEvent {
  readonly id: number;
  readonly sha256: Buffer;
  readonly body: string;
  readonly receivedAt: number;
  readonly phoneNumberIds: readonly string[];
}

/**
 * Events still unrouted of which a channel now serves a number (of `phoneNumberId` only, when
 * given), by id after `afterId`. Reading does not clear the flag: storing the event does.
 * An event stored well after its channel existed (a minute: far beyond any cache or statement)
 * is unrouted only for its other numbers, and is not taken again.
 */
export async function routableUnroutedEvents(pool: Pool, phoneNumberId: string | null, afterId: number, limit: number): Promise<UnroutedEvent[]> {
  const { rows } = await pool.query<{ id: string; body_sha256: Buffer; payload: string; received_at: Date; phone_number_ids: string[] }>(
    `SELECT id, body_sha256, payload::text AS payload, received_at, phone_number_ids FROM inbound_events
     WHERE unrouted AND id > $2 AND ($1::text IS NULL OR $1 = ANY(phone_number_ids))
       AND EXISTS (SELECT 1 FROM channels c WHERE c.phone_number_id = ANY(phone_number_ids) AND c.created_at > processed_at - interval '1 minute')
     ORDER BY id LIMIT $3`,
    [phoneNumberId, afterId, limit],
  );
  return rows.map((r) => ({ id: Number(r.id), sha256: r.body_sha256, body: r.payload, receivedAt: r.received_at.getTime(), phoneNumberIds: r.phone_number_ids }));
}

/** Takes events the database refused to store out of the replays; they live on in the dead-letter queue. */
export async function clearUnrouted(pool: Pool, ids: readonly number[]): Promise<void> {
  await pool.query('UPDATE inbound_events SET unrouted = false WHERE id = ANY($1::bigint[])', [ids]);
}

/** The channel given by the environment (WHATSAPP_PHONE_NUMBER_ID and WHATSAPP_ACCESS_TOKEN), if any. */
export async function bootstrapChannel(config: Config, pool: Pool): Promise<void> {
  if (!config.WHATSAPP_PHONE_NUMBER_ID || !config.WHATSAPP_ACCESS_TOKEN) return;
  await upsertBootstrapChannel(pool, {
    phoneNumberId: config.WHATSAPP_PHONE_NUMBER_ID,
    accessToken: config.WHATSAPP_ACCESS_TOKEN,
    wabaId: config.WHATSAPP_WABA_ID,
    displayPhoneNumber: config.WHATSAPP_DISPLAY_PHONE_NUMBER,
  });
}

/** The channel a send goes through: by our id, by Meta's phone_number_id, or the only one there is. */
export async function resolveChannel(pool: Pool, known: ReadonlyMap<number, ChannelForSend>, by: { channelId?: number | undefined; phoneNumberId?: string | undefined }): Promise<number | null> {
  // Channels are few and change rarely: the loaded ones answer without a query.
  if (by.channelId !== undefined && known.has(by.channelId)) return by.channelId;
  if (by.phoneNumberId !== undefined) for (const c of known.values()) if (c.phoneNumberId === by.phoneNumberId) return c.id;
  if (by.channelId !== undefined) {
    const { rows } = await pool.query<{ id: number }>('SELECT id FROM channels WHERE id = $1', [by.channelId]);
    return rows[0]?.id ?? null;
  }
  if (by.phoneNumberId !== undefined) {
    const { rows } = await pool.query<{ id: number }>('SELECT id FROM channels WHERE phone_number_id = $1', [by.phoneNumberId]);
    return rows[0]?.id ?? null;
  }
  const { rows } = await pool.query<{ id: number }>('SELECT id FROM channels LIMIT 2');
  return rows.length === 1 ? rows[0]!.id : null;
}
