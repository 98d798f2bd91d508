// Operator API: trace one message and its status history.
import { Router, type Request } from 'express';
import { z } from 'zod';
import { inAreas } from '../../store/conversations.js';
import { findMessage, type MessageView } from '../../store/messages-read.js';
import type { Pool } from '../../store/pool.js';
import { areaLimit } from '../../tokens/principal.js';
import { HttpError } from '../errors.js';
import { messageSchema } from '../views.js';
import { defineOperations } from '../../openapi/operation.js';

/** A token limited to areas sees only the messages of its areas' conversations. */
async function visible(pool: Pool, req: Request, msg: MessageView | null): Promise<MessageView | null> {
  return msg && (await inAreas(pool, msg.conversationId, areaLimit(req))) ? msg : null;
}

const byWamid = z.object({ wamid: z.string().min(1).max(256) });

export const messageOperations = defineOperations('Messages', [
  { method: 'get', path: '/v1/messages', summary: 'Find a message by its wamid', query: byWamid, responses: { 200: messageSchema } },
  {
    method: 'get', path: '/v1/messages/:id', summary: 'One message with its status history', responses: { 200: messageSchema },
    params: z.object({ id: z.string().meta({ description: "Our numeric id, or Meta's wamid" }) }),
  },
]);

export function messageRoutes(pool: Pool): Router {
  const r = Router();
  r.get('/messages', async (req, res) => {
    const q = byWamid.safeParse(req.query);
    if (!q.success) throw new HttpError(400, 'invalid_query', 'wamid is required', q.error.issues);
    const msg = await visible(pool, req, await findMessage(pool, { wamid: q.data.wamid }));
    if (!msg) throw new HttpError(404, 'not_found', 'no message with that wamid');
    res.json(msg);
  });
  r.get('/messages/:id', async (req, res) => {
    const id = req.params.id;
    // Numeric ids are ours; anything else is taken as a wamid, for convenience.
    const msg = await visible(pool, req, /^\d{1,15}$/.test(id) ? await findMessage(pool, { id: Number(id) }) : await findMessage(pool, { wamid: id }));
    if (!msg) throw new HttpError(404, 'not_found', `no message ${id}`);
    res.json(msg);
  });
  return r;
}
