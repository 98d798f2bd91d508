// The router's HTTP surface under /v1: areas, their deliveries, and conversation hand-offs.
import { randomUUID } from 'node:crypto';
import { Router, type Request } from 'express';
import { inAreas } from '../store/conversations.js';
import { areaLimit } from '../tokens/principal.js';
import { z } from 'zod';
import { HttpError } from '../http/errors.js';
import type { Pool } from '../store/pool.js';
import { areaViewSchema, createAreaSchema, createdAreaSchema, deliverySchema, patchAreaSchema } from './areas/schema.js';
import { createArea, deleteArea, findArea, listAreas, liveSecrets, patchArea, rotateSecret } from './areas/store.js';
import { signedHeaders } from './forwarding/forwarder.js';
import type { WebhookClient } from './forwarding/http-client.js';
import { listDeliveries, recordPing, replayDelivery } from './forwarding/deliveries.js';
import { parseBody, pathId } from './http-util.js';
import { checkWebhookUrl, UnsafeUrlError } from './ssrf.js';
import { assignConversation, releaseConversation } from './routing/assignments.js';
import type { RouteCache } from './routing/route-cache.js';
import { areaRefs, menuSchema, menuVersionSchema } from './menus/schema.js';
import { latestMenu, saveMenu } from './menus/store.js';
import { routeSchema } from '../http/views.js';
import { defineOperations } from '../openapi/operation.js';

export interface RouterRouteDeps {
  readonly pool: Pool;
  readonly routes: RouteCache;
  /** Tells the forwarding workers that events were queued. */
  readonly wake: () => void;
  readonly client: WebhookClient;
  readonly allowPrivate: boolean;
  readonly rotationGraceSeconds: number;
}

const deliveriesQuery = z.object({
  status: z.enum(['pending', 'succeeded', 'dead']).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  before: z.coerce.number().int().positive().optional(),
});

const assignBody = z.object({ areaId: z.number().int().positive() }).strict();
const id = z.coerce.number().int().positive();
const params = z.object({ id });
const routed = z.object({ id: z.number().int(), route: routeSchema });

export const routerOperations = [
  ...defineOperations('Areas', [
    { method: 'post', path: '/v1/areas', summary: 'Create an area (a team and the webhook it receives conversations at)', body: createAreaSchema, responses: { 201: createdAreaSchema } },
    { method: 'get', path: '/v1/areas', summary: 'All areas', responses: { 200: z.object({ data: z.array(areaViewSchema) }) } },
    { method: 'get', path: '/v1/areas/:id', summary: 'One area', params, responses: { 200: areaViewSchema } },
    { method: 'patch', path: '/v1/areas/:id', summary: 'Change an area; `enabled: true` re-enables one disabled by a 410', params, body: patchAreaSchema, responses: { 200: areaViewSchema } },
    { method: 'delete', path: '/v1/areas/:id', summary: 'Delete an area', params, responses: { 204: { description: 'Deleted' } } },
    {
      method: 'post', path: '/v1/areas/:id/rotate-secret', summary: 'A new signing secret; the old one keeps signing for a grace period', params,
      responses: { 200: z.object({ secret: z.string(), previousExpiresAt: z.iso.datetime() }) },
    },
    {
      method: 'post', path: '/v1/areas/:id/test', summary: "Send a signed `ping` to the area's webhook", params,
      responses: { 200: z.object({ delivered: z.boolean(), webhookId: z.string(), statusCode: z.number().int().nullable(), latencyMs: z.number(), error: z.string().nullable(), response: z.string().nullable() }) },
    },
    { method: 'get', path: '/v1/areas/:id/deliveries', summary: "The area's deliveries with their attempts, newest first", params, query: deliveriesQuery, responses: { 200: z.object({ data: z.array(deliverySchema), nextCursor: z.string().nullable().meta({ description: 'Give it back as `before`' }) }) } },
    {
      method: 'post', path: '/v1/areas/:id/deliveries/:deliveryId/replay', summary: 'Deliver a dead-lettered event again (same webhook-id)', params: z.object({ id, deliveryId: id }),
      responses: { 202: z.object({ id: z.number().int(), webhookId: z.string(), status: z.string() }) },
    },
  ]),
  ...defineOperations('Conversations', [
    { method: 'post', path: '/v1/conversations/:id/assign', summary: 'Assign a conversation to an area', params, body: assignBody, responses: { 200: routed } },
    { method: 'post', path: '/v1/conversations/:id/release', summary: 'Return a conversation to the menu', params, responses: { 200: routed } },
  ]),
  ...defineOperations('Menus', [
    { method: 'put', path: '/v1/channels/:id/menu', summary: "Save a channel's menu (a new version)", params, body: menuSchema, responses: { 200: menuVersionSchema } },
    { method: 'get', path: '/v1/channels/:id/menu', summary: "A channel's current menu", params, responses: { 200: menuVersionSchema } },
  ]),
];

export function routerRoutes(deps: RouterRouteDeps): Router {
  const { pool } = deps;
  const r = Router();
  const safeUrl = async (url: string) => {
    try {
      await checkWebhookUrl(url, deps.allowPrivate);
    } catch (err) {
      if (err instanceof UnsafeUrlError) throw new HttpError(400, 'invalid_request', `invalid webhookUrl: ${err.message}`, [{ field: 'webhookUrl', message: err.message }]);
      throw err;
    }
  };
  const existing = async (raw: string | undefined) => {
    const area = await findArea(pool, pathId(raw, 'area'));
    if (!area) throw new HttpError(404, 'not_found', `no area ${raw}`);
    return area;
  };
  const channelsExist = async (ids: number[] | null | undefined) => {
    if (!ids) return;
    const { rows } = await pool.query<{ id: number }>('SELECT id FROM channels WHERE id = ANY ($1::bigint[])', [ids]);
    const missing = ids.filter((id) => !rows.some((row) => row.id === id));
    if (missing.length) throw new HttpError(400, 'invalid_request', 'invalid channelIds', [{ field: 'channelIds', message: `no channel ${missing.join(', ')}` }]);
  };

  r.post('/areas', async (req, res) => {
    const body = parseBody(createAreaSchema, req.body);
    await safeUrl(body.webhookUrl);
    await channelsExist(body.channelIds);
    const { area, secret } = await createArea(pool, body);
    res.status(201).json({ ...area, secret });
  });
  r.get('/areas', async (_req, res) => {
    res.json({ data: await listAreas(pool) });
  });
  r.get('/areas/:id', async (req, res) => {
    res.json(await existing(req.params.id));
  });
  r.patch('/areas/:id', async (req, res) => {
    const id = pathId(req.params.id, 'area');
    const body = parseBody(patchAreaSchema, req.body);
    if (body.webhookUrl !== undefined) await safeUrl(body.webhookUrl);
    await channelsExist(body.channelIds);
    const area = await patchArea(pool, id, body);
    if (!area) throw new HttpError(404, 'not_found', `no area ${id}`);
    res.json(area);
  });
  r.delete('/areas/:id', async (req, res) => {
    const id = pathId(req.params.id, 'area');
    const released = await deleteArea(pool, id);
    if (!released) throw new HttpError(404, 'not_found', `no area ${id}`);
    await deps.routes.changed(released);
    res.status(204).end();
  });
  r.post('/areas/:id/rotate-secret', async (req, res) => {
    const id = pathId(req.params.id, 'area');
    const rotated = await rotateSecret(pool, id, deps.rotationGraceSeconds);
    if (!rotated) throw new HttpError(404, 'not_found', `no area ${id}`);
    res.json(rotated);
  });
  r.post('/areas/:id/test', async (req, res) => {
    const area = await existing(req.params.id);
    await safeUrl(area.webhookUrl);
    const secrets = (await liveSecrets(pool, [area.id])).get(area.id) ?? [];
    const webhookId = `msg_${randomUUID().replaceAll('-', '')}`;
    const body = JSON.stringify({ type: 'ping', timestamp: new Date().toISOString(), data: { conversationId: null, channelId: null, areaId: area.id, contact: null } });
    const result = await deps.client.post(area.webhookUrl, signedHeaders(webhookId, secrets, body), body);
    const ok = result.statusCode !== null && result.statusCode >= 200 && result.statusCode < 300;
    await recordPing(pool, area.id, webhookId, body, ok, result);
    res.json({ delivered: ok, webhookId, statusCode: result.statusCode, latencyMs: result.latencyMs, error: result.error ?? (ok ? null : `HTTP ${result.statusCode}`), response: result.response });
  });
  r.get('/areas/:id/deliveries', async (req, res) => {
    const area = await existing(req.params.id);
    const q = parseBody(deliveriesQuery, req.query, 'invalid_query');
    res.json(await listDeliveries(pool, area.id, q));
  });
  r.post('/areas/:id/deliveries/:deliveryId/replay', async (req, res) => {
    const area = await existing(req.params.id);
    if (area.disabled) throw new HttpError(409, 'area_disabled', `area ${area.id} is disabled (${area.disabled.reason ?? 'no reason given'}): enable it with PATCH {"enabled": true} before replaying`);
    const replayed = await replayDelivery(pool, area.id, pathId(req.params.deliveryId, 'delivery'));
    if (!replayed) throw new HttpError(404, 'not_found', `no dead-lettered delivery ${req.params.deliveryId} of area ${area.id}`);
    deps.wake();
    res.status(202).json(replayed);
  });

  // A token limited to areas hands off only its areas' conversations, and only among its areas.
  const handOff = async (req: Request) => {
    const id = pathId(req.params.id as string | undefined, 'conversation');
    if (!(await inAreas(pool, id, areaLimit(req)))) throw new HttpError(404, 'not_found', `no conversation ${id}`);
    return id;
  };
  r.post('/conversations/:id/assign', async (req, res) => {
    const id = await handOff(req);
    const { areaId } = parseBody(assignBody, req.body);
    const areas = areaLimit(req);
    if (areas && !areas.includes(areaId)) throw new HttpError(403, 'forbidden', `this token may not assign to area ${areaId}`, { allowedAreaIds: areas });
    const { route, cached } = await assignConversation(pool, id, areaId, 'api');
    await deps.routes.changed([cached]);
    deps.wake();
    res.json({ id, route });
  });
  r.post('/conversations/:id/release', async (req, res) => {
    const id = await handOff(req);
    const { route, cached } = await releaseConversation(pool, id);
    await deps.routes.changed([cached]);
    deps.wake();
    res.json({ id, route });
  });

  r.put('/channels/:id/menu', async (req, res) => {
    const channelId = pathId(req.params.id, 'channel');
    const menu = parseBody(menuSchema, req.body, 'invalid_menu');
    const channel = await pool.query('SELECT 1 FROM channels WHERE id = $1', [channelId]);
    if (channel.rowCount === 0) throw new HttpError(404, 'not_found', `no channel ${channelId}`);
    const refs = areaRefs(menu);
    const { rows } = await pool.query<{ id: number }>('SELECT id FROM areas WHERE id = ANY ($1::bigint[])', [refs.map((x) => x.areaId)]);
    const missing = refs.filter((x) => !rows.some((row) => row.id === x.areaId));
    if (missing.length) throw new HttpError(400, 'invalid_menu', `invalid ${missing.map((m) => m.field).join(', ')}`, missing.map((m) => ({ field: m.field, message: `no area ${m.areaId}` })));
    const saved = await saveMenu(pool, channelId, menu);
    await deps.routes.menusChanged();
    res.json(saved);
  });
  r.get('/channels/:id/menu', async (req, res) => {
    const channelId = pathId(req.params.id, 'channel');
    const menu = await latestMenu(pool, channelId);
    if (!menu) throw new HttpError(404, 'not_found', `channel ${channelId} has no menu`);
    res.json(menu);
  });
  return r;
}
