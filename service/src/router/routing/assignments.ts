// Assigning a conversation to an area and releasing it back to the menu, with the events
// the areas are told, in one transaction.
import type { Pool, PoolClient } from '../../store/pool.js';
import { withTransaction } from '../../store/pool.js';
import { HttpError } from '../../http/errors.js';
import type { CachedRoute } from './route-cache.js';

export interface RouteView {
  state: 'menu' | 'assigned' | 'closed';
  areaId: number | null;
  assignedAt: string | null;
}

type Conv = { id: number; channel_id: number; contact: Record<string, unknown>; state: RouteView['state'] | null; area_id: number | null };

async function lockConversation(c: PoolClient, id: number): Promise<Conv> {
  const { rows } = await c.query<Conv>(
    `SELECT cv.id, cv.channel_id, r.state, r.area_id,
            jsonb_build_object('id', ct.id, 'waId', ct.wa_id, 'profileName', ct.profile_name, 'userId', ct.user_id, 'username', ct.username) AS contact
     FROM conversations cv JOIN contacts ct ON ct.id = cv.contact_id
     LEFT JOIN conversation_routes r ON r.conversation_id = cv.id
     WHERE cv.id = $1 FOR UPDATE OF cv`,
    [id],
  );
  if (!rows[0]) throw new HttpError(404, 'not_found', `no conversation ${id}`);
  return rows[0];
}

/**
 * Queues an event for the area if it is enabled, wants that type and serves the channel. The area
 * row is locked as the forwarding triggers do (014_router_disable_lock.sql): a concurrent disable
 * then either sees the event or is seen.
 */
async function enqueue(c: PoolClient, conv: Conv, areaId: number, type: string, route: RouteView): Promise<void> {
  await c.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data)
     SELECT a.id, $2, $3, $4::jsonb FROM areas a
     WHERE a.id = $1 AND a.disabled_at IS NULL AND (a.events IS NULL OR $3 = ANY (a.events)) AND (a.channel_ids IS NULL OR $5::bigint = ANY (a.channel_ids))
     FOR KEY SHARE OF a`,
    [areaId, conv.id, type, JSON.stringify({ conversationId: conv.id, channelId: conv.channel_id, contact: conv.contact, route }), conv.channel_id],
  );
}

/** A change of a conversation's routing: what the API shows, and what the route cache must learn once it commits. */
export interface RouteChange {
  readonly route: RouteView;
  readonly cached: CachedRoute;
}

export async function assignConversation(pool: Pool, conversationId: number, areaId: number, by: 'menu' | 'api', db?: PoolClient): Promise<RouteChange> {
  const run = async (c: PoolClient): Promise<RouteChange> => {
    const conv = await lockConversation(c, conversationId);
    // The menu's assignment holds the conversation's order lock exclusively (032) from here, before
    // its enqueues take it shared: taken after, the upgrade could deadlock with another
    // conversation's assignment whose key collides.
    if (by === 'menu') await c.query('SELECT pg_advisory_xact_lock(2003201906, hashint8($1::bigint))', [conversationId]);
    const area = await c.query<{ id: number }>('SELECT id FROM areas WHERE id = $1', [areaId]);
    if (!area.rows[0]) throw new HttpError(400, 'invalid_request', `no area ${areaId}`, [{ field: 'areaId', message: `no area ${areaId}` }]);
    if (conv.state === 'assigned' && conv.area_id === areaId) {
      const { rows } = await c.query<{ assigned_at: Date; version: string }>('SELECT assigned_at, version FROM conversation_routes WHERE conversation_id = $1', [conversationId]);
      return { route: { state: 'assigned', areaId, assignedAt: rows[0]!.assigned_at.toISOString() }, cached: { conversationId, version: Number(rows[0]!.version), areaId } };
    }
    const { rows } = await c.query<{ assigned_at: Date; version: string }>(
      `INSERT INTO conversation_routes (conversation_id, state, area_id, assigned_at, assigned_by) VALUES ($1, 'assigned', $2, now(), $3)
       ON CONFLICT (conversation_id) DO UPDATE SET state = 'assigned', area_id = $2, assigned_at = now(), assigned_by = $3, updated_at = now()
       RETURNING assigned_at, version`,
      [conversationId, areaId, by],
    );
    const route: RouteView = { state: 'assigned', areaId, assignedAt: rows[0]!.assigned_at.toISOString() };
    if (conv.state === 'assigned' && conv.area_id !== null) await enqueue(c, conv, conv.area_id, 'conversation.released', route);
    await enqueue(c, conv, areaId, 'conversation.assigned', route);
    return { route, cached: { conversationId, version: Number(rows[0]!.version), areaId } };
  };
  return db ? run(db) : withTransaction(pool, run);
}

/** Back to the menu: the area is told, the next customer message starts the menu again. */
export async function releaseConversation(pool: Pool, conversationId: number): Promise<RouteChange> {
  return withTransaction(pool, async (c) => {
    const conv = await lockConversation(c, conversationId);
    const route: RouteView = { state: 'menu', areaId: null, assignedAt: null };
    const { rows } = await c.query<{ version: string }>(
      `INSERT INTO conversation_routes (conversation_id, state) VALUES ($1, 'menu')
       ON CONFLICT (conversation_id) DO UPDATE SET state = 'menu', area_id = NULL, assigned_at = NULL, assigned_by = NULL,
         menu_version = NULL, menu_node = NULL, menu_message_id = NULL, menu_started_at = NULL, invalid_count = 0, updated_at = now()
       RETURNING version`,
      [conversationId],
    );
    // The customer messages queued while assigned were never the menu's: marked routed, so the next
    // menu session's catch-up never queues them again. Their stores lock this conversation row too,
    // so none is being stored unseen.
    await c.query(
      `UPDATE messages SET routed = true
       WHERE conversation_id = $1 AND direction = 'inbound' AND source = 'live' AND NOT routed`,
      [conversationId],
    );
    if (conv.state === 'assigned' && conv.area_id !== null) await enqueue(c, conv, conv.area_id, 'conversation.released', route);
    return { route, cached: { conversationId, version: Number(rows[0]!.version), areaId: null } };
  });
}

export async function routeOf(pool: Pool, conversationId: number): Promise<RouteView> {
  const { rows } = await pool.query<{ state: RouteView['state']; area_id: number | null; assigned_at: Date | null }>('SELECT state, area_id, assigned_at FROM conversation_routes WHERE conversation_id = $1', [conversationId]);
  const r = rows[0];
  return r ? { state: r.state, areaId: r.area_id, assignedAt: r.assigned_at?.toISOString() ?? null } : { state: 'menu', areaId: null, assignedAt: null };
}
