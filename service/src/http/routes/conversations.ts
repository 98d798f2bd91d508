// Agent API: the inbox (conversations by latest activity), a conversation's messages, and
// marking it read (optionally with a WhatsApp read receipt for the customer's last message).
import { Router } from 'express';
import { z } from 'zod';
import type { Publish } from '../../events/hub.js';
import { CursorError, decodeCursor, findConversation, listConversationMessages, listConversations, markConversationRead } from '../../store/conversations.js';
import type { Pool } from '../../store/pool.js';
import { HttpError } from '../errors.js';
import { conversationSchema, messageItemSchema, pageOf } from '../views.js';
import { defineOperations } from '../../openapi/operation.js';

const page = {
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(512).optional().meta({ description: "The previous page's `nextCursor`" }),
};
const listQuery = z.object({
  ...page,
  channelId: z.coerce.number().int().positive().optional().meta({ description: "Only this channel's conversations" }),
  areaId: z.coerce.number().int().positive().optional().meta({ description: 'Only conversations assigned to this area' }),
  unread: z.enum(['true', 'false']).transform((v) => v === 'true').optional().meta({ description: '`true`: only conversations with unread messages' }),
});
const pageQuery = z.object(page);
const flag = z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]).optional();
/** `readReceipt` (also spelled `readReceipts`, `sendReadReceipt(s)`), in the body or the query. */
const readOptions = z.object({ readReceipt: flag, readReceipts: flag, sendReadReceipt: flag, sendReadReceipts: flag });
const idParam = z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER);

const params = z.object({ id: idParam });
export const readAnswerSchema = z.object({
  id: z.number().int(),
  unreadCount: z.literal(0),
  readReceipt: z.object({ sent: z.boolean(), wamid: z.string().nullable(), error: z.string().optional().meta({ description: 'Why Meta refused it; the unread count is cleared all the same' }) }).optional(),
});

export const conversationOperations = defineOperations('Conversations', [
  { method: 'get', path: '/v1/conversations', summary: 'The inbox: conversations, newest activity first', query: listQuery, responses: { 200: pageOf(conversationSchema, 'ConversationPage') } },
  { method: 'get', path: '/v1/conversations/:id', summary: 'One conversation', params, responses: { 200: conversationSchema } },
  { method: 'get', path: '/v1/conversations/:id/messages', summary: "A conversation's messages, newest first", params, query: pageQuery, responses: { 200: pageOf(messageItemSchema, 'MessagePage') } },
  {
    method: 'post', path: '/v1/conversations/:id/read', summary: 'Mark a conversation read', params, query: readOptions, body: readOptions, responses: { 200: readAnswerSchema },
    description: "Clears the unread count. With `readReceipt: true` (body or query) also sends Meta's read receipt for the customer's last message.",
  },
]);

export interface ConversationRouteDeps {
  readonly pool: Pool;
  readonly publish: Publish;
  /** Sends Meta's read receipt for a message; resolves to an error text when Meta refused it. */
  readonly sendReadReceipt: (channelId: number, wamid: string) => Promise<string | null>;
}

function parse<T>(schema: z.ZodType<T>, value: unknown, code: string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new HttpError(400, code, 'the request is not valid', r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })));
  return r.data;
}

function cursorOf(raw: string | undefined) {
  try {
    return decodeCursor(raw);
  } catch (err) {
    if (err instanceof CursorError) throw new HttpError(400, 'invalid_cursor', err.message);
    throw err;
  }
}

function conversationId(raw: string | undefined): number {
  const r = idParam.safeParse(raw);
  if (!r.success) throw new HttpError(404, 'not_found', `no conversation ${raw}`);
  return r.data;
}

export function conversationRoutes(deps: ConversationRouteDeps): Router {
  const r = Router();
  r.get('/conversations', async (req, res) => {
    const q = parse(listQuery, req.query, 'invalid_query');
    res.json(await listConversations(deps.pool, { limit: q.limit, cursor: cursorOf(q.cursor), channelId: q.channelId, unread: q.unread, areaId: q.areaId }));
  });
  r.get('/conversations/:id', async (req, res) => {
    const conv = await findConversation(deps.pool, conversationId(req.params.id));
    if (!conv) throw new HttpError(404, 'not_found', `no conversation ${req.params.id}`);
    res.json(conv);
  });
  r.get('/conversations/:id/messages', async (req, res) => {
    const id = conversationId(req.params.id);
    const q = parse(pageQuery, req.query, 'invalid_query');
    const cursor = cursorOf(q.cursor);
    if (cursor?.t === null) throw new HttpError(400, 'invalid_cursor', 'cursor is not one this API gave out');
    const result = await listConversationMessages(deps.pool, id, { limit: q.limit, cursor });
    if (result.data.length === 0 && !(await findConversation(deps.pool, id))) throw new HttpError(404, 'not_found', `no conversation ${id}`);
    res.json(result);
  });
  r.post('/conversations/:id/read', async (req, res) => {
    const id = conversationId(req.params.id);
    const o = { ...parse(readOptions, req.query, 'invalid_query'), ...parse(readOptions, req.body ?? {}, 'invalid_request') };
    const wantReceipt = (o.readReceipt ?? o.readReceipts ?? o.sendReadReceipt ?? o.sendReadReceipts) === true;
    const marked = await markConversationRead(deps.pool, id);
    if (!marked) throw new HttpError(404, 'not_found', `no conversation ${id}`);
    deps.publish({ type: 'conversation.updated', conversationId: id, channelId: marked.channelId, unreadCount: 0 });
    let readReceipt: { sent: boolean; wamid: string | null; error?: string } | undefined;
    if (wantReceipt) {
      // Meta marks everything up to that message read; failing to is reported, the unread count stays cleared.
      const wamid = marked.lastInboundWamid;
      const error = wamid ? await deps.sendReadReceipt(marked.channelId, wamid) : 'the conversation has no inbound message';
      readReceipt = { sent: error === null, wamid, ...(error !== null ? { error } : {}) };
    }
    res.json({ id, unreadCount: 0, ...(readReceipt ? { readReceipt } : {}) });
  });
  return r;
}
