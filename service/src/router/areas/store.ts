// Areas and their signing secrets in Postgres.
import type { Pool } from '../../store/pool.js';
import { withTransaction } from '../../store/pool.js';
import { newSecret } from '../signing.js';
import type { BusinessHours, CreateArea, PatchArea } from './schema.js';
import type { CachedRoute } from '../routing/route-cache.js';
import { disableArea } from '../forwarding/outbox.js';

export interface AreaView {
  id: number;
  name: string;
  webhookUrl: string;
  channelIds: number[] | null;
  events: string[] | null;
  hours: BusinessHours | null;
  disabled: { at: string; reason: string | null } | null;
  createdAt: string;
  updatedAt: string;
}

type AreaRow = {
  id: number; name: string; webhook_url: string; channel_ids: string[] | null; events: string[] | null; hours: BusinessHours | null;
  disabled_at: Date | null; disabled_reason: string | null; created_at: Date; updated_at: Date;
};

const view = (r: AreaRow): AreaView => ({
  id: Number(r.id),
  name: r.name,
  webhookUrl: r.webhook_url,
  channelIds: r.channel_ids ? r.channel_ids.map(Number) : null,
  events: r.events,
  hours: r.hours,
  disabled: r.disabled_at ? { at: r.disabled_at.toISOString(), reason: r.disabled_reason } : null,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

export async function createArea(pool: Pool, a: CreateArea): Promise<{ area: AreaView; secret: string }> {
  const secret = newSecret();
  const { rows } = await pool.query<AreaRow>(
    `WITH a AS (
       INSERT INTO areas (name, webhook_url, channel_ids, events, hours) VALUES ($1, $2, $3, $4, $5) RETURNING *),
     s AS (INSERT INTO area_secrets (area_id, secret) SELECT id, $6 FROM a)
     SELECT * FROM a`,
    [a.name, a.webhookUrl, a.channelIds ?? null, a.events ?? null, a.hours ? JSON.stringify(a.hours) : null, secret],
  );
  return { area: view(rows[0]!), secret };
}

export async function listAreas(pool: Pool): Promise<AreaView[]> {
  return (await pool.query<AreaRow>('SELECT * FROM areas ORDER BY id')).rows.map(view);
}

export async function findArea(pool: Pool, id: number): Promise<AreaView | null> {
  const { rows } = await pool.query<AreaRow>('SELECT * FROM areas WHERE id = $1', [id]);
  return rows[0] ? view(rows[0]) : null;
}

/** Edits the area; disabling it dead-letters its pending events in the same transaction. */
export async function patchArea(pool: Pool, id: number, p: PatchArea): Promise<AreaView | null> {
  const sets: string[] = [];
  const values: unknown[] = [id];
  const set = (col: string, v: unknown) => {
    values.push(v);
    sets.push(`${col} = $${values.length}`);
  };
  if (p.name !== undefined) set('name', p.name);
  if (p.webhookUrl !== undefined) set('webhook_url', p.webhookUrl);
  if (p.channelIds !== undefined) set('channel_ids', p.channelIds);
  if (p.events !== undefined) set('events', p.events);
  if (p.hours !== undefined) set('hours', p.hours ? JSON.stringify(p.hours) : null);
  if (p.enabled === true) sets.push('disabled_at = NULL', 'disabled_reason = NULL');
  sets.push('updated_at = now()');
  return withTransaction(pool, async (c) => {
    const { rows } = await c.query<AreaRow>(`UPDATE areas SET ${sets.join(', ')} WHERE id = $1 RETURNING *`, values);
    if (!rows[0]) return null;
    if (p.enabled !== false) return view(rows[0]);
    await disableArea(pool, id, 'disabled by the API', c);
    return view((await c.query<AreaRow>('SELECT * FROM areas WHERE id = $1', [id])).rows[0]!);
  });
}

/**
 * Deletes the area; its conversations go back to the menu as a release sends them, their next
 * message starting it again (returned, for the route cache). Null: no such area.
 */
export async function deleteArea(pool: Pool, id: number): Promise<CachedRoute[] | null> {
  return withTransaction(pool, async (c) => {
    const { rows } = await c.query<{ conversation_id: string; version: string }>(
      `UPDATE conversation_routes SET state = 'menu', area_id = NULL, assigned_at = NULL, assigned_by = NULL,
         menu_version = NULL, menu_node = NULL, menu_message_id = NULL, invalid_count = 0, updated_at = now()
       WHERE area_id = $1 RETURNING conversation_id, version`,
      [id],
    );
    if (((await c.query('DELETE FROM areas WHERE id = $1', [id])).rowCount ?? 0) === 0) return null;
    return rows.map((r) => ({ conversationId: Number(r.conversation_id), version: Number(r.version), areaId: null }));
  });
}

/** A new secret; the live ones keep signing until `graceSeconds` from now. */
export async function rotateSecret(pool: Pool, id: number, graceSeconds: number): Promise<{ secret: string; previousExpiresAt: string } | null> {
  const secret = newSecret();
  const { rows } = await pool.query<{ expires: Date }>(
    `WITH a AS (SELECT id FROM areas WHERE id = $1),
     old AS (
       UPDATE area_secrets s SET expires_at = LEAST(COALESCE(s.expires_at, 'infinity'), now() + make_interval(secs => $3))
       FROM a WHERE s.area_id = a.id AND (s.expires_at IS NULL OR s.expires_at > now())),
     ins AS (INSERT INTO area_secrets (area_id, secret) SELECT id, $2 FROM a RETURNING area_id)
     SELECT now() + make_interval(secs => $3) AS expires FROM ins`,
    [id, secret, graceSeconds],
  );
  return rows[0] ? { secret, previousExpiresAt: rows[0].expires.toISOString() } : null;
}

/** Secrets that sign now, per area, newest first. */
export async function liveSecrets(pool: Pool, areaIds: readonly number[]): Promise<Map<number, string[]>> {
  const { rows } = await pool.query<{ area_id: string; secrets: string[] }>(
    `SELECT area_id, array_agg(secret ORDER BY id DESC) AS secrets FROM area_secrets
     WHERE area_id = ANY($1::bigint[]) AND (expires_at IS NULL OR expires_at > now()) GROUP BY area_id`,
    [areaIds],
  );
  return new Map(rows.map((r) => [Number(r.area_id), r.secrets]));
}
