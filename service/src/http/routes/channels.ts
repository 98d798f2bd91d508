// GET/POST /v1/channels: the WhatsApp numbers served. Tokens go in, never out.
import { Router } from 'express';
import { z } from 'zod';
import type { Pool } from '../../store/pool.js';
import { HttpError } from '../errors.js';
import { defineOperations } from '../../openapi/operation.js';

const channelSchema = z.object({
  phoneNumberId: z.string().regex(/^\d+$/),
  accessToken: z.string().min(1),
  wabaId: z.string().regex(/^\d+$/).optional(),
  displayPhoneNumber: z.string().max(32).optional(),
  name: z.string().max(200).optional(),
  messagesPerSecond: z.number().int().min(1).max(1000).optional(),
});

export interface ChannelRouteDeps {
  readonly pool: Pool;
  /** Called after a channel is created or updated (replays its unrouted events, refreshes caches). */
  readonly onSaved?: (channel: { id: number; phoneNumberId: string }) => Promise<void>;
}

const view = (r: Record<string, unknown>) => ({
  id: r.id,
  phoneNumberId: r.phone_number_id,
  wabaId: r.waba_id,
  displayPhoneNumber: r.display_phone_number,
  name: r.name,
  messagesPerSecond: r.messages_per_second,
  paused: r.paused_reason !== null,
  pausedReason: r.paused_reason,
  hasToken: r.access_token !== null,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const time = z.iso.datetime();
export const channelViewSchema = z
  .object({
    id: z.number().int().positive(),
    phoneNumberId: z.string(),
    wabaId: z.string().nullable(),
    displayPhoneNumber: z.string().nullable(),
    name: z.string().nullable(),
    messagesPerSecond: z.number().int(),
    paused: z.boolean(),
    pausedReason: z.string().nullable().meta({ description: 'Why sending is paused (an invalid token, a blocked number), until a new token is saved' }),
    hasToken: z.boolean(),
    createdAt: time,
    updatedAt: time,
  })
  .meta({ id: 'Channel' });

export const channelOperations = defineOperations('Channels', [
  { method: 'get', path: '/v1/channels', summary: 'The WhatsApp numbers served', responses: { 200: z.object({ items: z.array(channelViewSchema) }) } },
  {
    method: 'post', path: '/v1/channels', summary: 'Add a number, or update one (by phoneNumberId)', body: channelSchema, responses: { 200: channelViewSchema, 201: channelViewSchema },
    description: 'The access token is stored and never shown again. Saving a token lifts a pause caused by the old one.',
  },
]);

export function channelRoutes(deps: ChannelRouteDeps): Router {
  const r = Router();
  r.get('/channels', async (_req, res) => {
    const { rows } = await deps.pool.query('SELECT * FROM channels ORDER BY id');
    res.json({ items: rows.map(view) });
  });
  r.post('/channels', async (req, res) => {
    const p = channelSchema.safeParse(req.body);
    if (!p.success) throw new HttpError(400, 'invalid_channel', 'the channel is not valid', p.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })));
    const c = p.data;
    // Saving a token also lifts a pause caused by the old one (190) or an old block.
    const { rows } = await deps.pool.query(
      `INSERT INTO channels (phone_number_id, access_token, waba_id, display_phone_number, name, messages_per_second)
       VALUES ($1, $2, $3, $4, $5, COALESCE($6, 80))
       ON CONFLICT (phone_number_id) DO UPDATE SET access_token = EXCLUDED.access_token,
         waba_id = COALESCE(EXCLUDED.waba_id, channels.waba_id),
         display_phone_number = COALESCE(EXCLUDED.display_phone_number, channels.display_phone_number),
         name = COALESCE(EXCLUDED.name, channels.name),
         messages_per_second = COALESCE($6, channels.messages_per_second),
         paused_reason = NULL, updated_at = now()
       RETURNING *, (xmax = 0) AS inserted`,
      [c.phoneNumberId, c.accessToken, c.wabaId ?? null, c.displayPhoneNumber ?? null, c.name ?? null, c.messagesPerSecond ?? null],
    );
    const row = rows[0]!;
    await deps.onSaved?.({ id: row.id as number, phoneNumberId: c.phoneNumberId });
    res.status(row.inserted ? 201 : 200).json(view(row));
  });
  return r;
}
