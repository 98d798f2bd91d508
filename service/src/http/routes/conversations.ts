// Agent API: the inbox (conversations by latest activity, filtered and searched), a
// conversation's messages, its lifecycle (open/closed, assignee), and marking it read (optionally
// with a WhatsApp read receipt for the customer's last message). A token limited to areas sees
// only conversations assigned to them: any other is not found.
import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import type { Publish } from '../../events/hub.js';
import { CursorError, decodeCursor, findConversation, inAreas, listConversationMessages, listConversations, markConversationRead, patchConversation } from '../../store/conversations.js';
import type { Pool } from '../../store/pool.js';
import { areaLimit, principalOf } from '../../tokens/principal.js';
import { liveTokenIds } from '../../tokens/store.js';
import { HttpError } from '../errors.js';
import { conversationSchema, messageItemSchema, pageOf } from '../views.js';
import { defineOperations } from '../../openapi/operation.js';

const page = {
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(512).optional().meta({ description: "The previous page's `nextCursor`" }),
};
export const conversationStatusSchema = z.enum(['open', 'closed']);
export const listConversationsQuery = z.object({
  ...page,
  channelId: z.coerce.number().int().positive().optional().meta({ description: "Only this channel's conversations" }),
  areaId: z.coerce.number().int().positive().optional().meta({ description: 'Only conversations assigned to this area' }),
  unread: z.enum(['true', 'false']).transform((v) => v === 'true').optional().meta({ description: '`true`: only conversations with unread messages' }),
  status: conversationStatusSchema.optional().meta({ description: 'Only open or only closed conversations' }),
  assignee: z.string().min(1).max(200).optional().meta({ description: "Exact match on the assignee (an opaque agent id)" }),
  // A control character could match across fields (joined by a newline in the search index).
  q: z.string().trim().min(1).max(100).regex(/^[^\p{Cc}]*$/u, 'must not contain control characters').optional().meta({ description: "A substring of the contact's name, number or username, case-insensitive" }),
});
/** `assignee: null` clears it; a field left out is left as it is. */
export const patchConversationSchema = z
  .object({ status: conversationStatusSchema.optional(), assignee: z.string().min(1).max(200).nullable().optional() })
  .strict()
  .refine((b) => b.status !== undefined || b.assignee !== undefined, 'give status, assignee or both');
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
  { method: 'get', path: '/v1/conversations', summary: 'The inbox: conversations, newest activity first', query: listConversationsQuery, responses: { 200: pageOf(conversationSchema, 'ConversationPage') } },
  { method: 'get', path: '/v1/conversations/:id', summary: 'One conversation', params, responses: { 200: conversationSchema } },
  {
    method: 'patch', path: '/v1/conversations/:id', summary: 'Close, reopen or (un)assign a conversation to an agent', params, body: patchConversationSchema,
    description: '`assignee: null` clears the assignee; a field left out stays as it is. Fires `conversation.updated`.',
    responses: { 200: conversationSchema },
  },
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

/**
 * A body the store wrote as JSON already: `send` (not `json`, which would serialize it again) keeps
 * what clients revalidating a page rely on: its ETag, 304 for `If-None-Match`, Content-Length, HEAD.
 */
function sendJson(res: Response, json: string): void {
  res.type('application/json').send(json);
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

/** The request's token, when its liveness is left to the page's statement (see foldsLiveness). */
function owedLiveness(req: Request): number | undefined {
  const p = principalOf(req);
  return p?.livenessOwed ? p.tokenId! : undefined;
}

/** A page of no rows with the liveness folded in: an empty page, or a token no longer live (401). */
async function refuseDeadToken(pool: Pool, res: Response, tokenId: number | undefined): Promise<void> {
  if (tokenId === undefined || (await liveTokenIds(pool, [tokenId])).has(tokenId)) return;
  res.setHeader('WWW-Authenticate', 'Bearer realm="wa-router"');
  throw new HttpError(401, 'unauthorized', 'a valid bearer token is required');
}

export function conversationRoutes(deps: ConversationRouteDeps): Router {
  const r = Router();
  /** The path's conversation id, when the request's token may see it; otherwise not found. */
  const visible = async (req: Request): Promise<number> => {
    const id = conversationId(req.params.id as string | undefined);
    if (!(await inAreas(deps.pool, id, areaLimit(req)))) throw new HttpError(404, 'not_found', `no conversation ${id}`);
    return id;
  };
  /** A route that may owe its token's liveness (foldsLiveness): an answer other than its page checks it first. */
  const folding = (handler: (req: Request, res: Response) => Promise<void>) => async (req: Request, res: Response) => {
    try {
      await handler(req, res);
    } catch (err) {
      if (!(err instanceof HttpError && err.status === 401)) await refuseDeadToken(deps.pool, res, owedLiveness(req));
      throw err;
    }
  };
  r.get('/conversations', folding(async (req, res) => {
    const q = parse(listConversationsQuery, req.query, 'invalid_query');
    const { cursor, ...filter } = q;
    const liveToken = owedLiveness(req);
    const page = await listConversations(deps.pool, { ...filter, cursor: cursorOf(cursor), areaIds: areaLimit(req), liveToken });
    if (page.rows === 0) await refuseDeadToken(deps.pool, res, liveToken);
    sendJson(res, page.json);
  }));
  r.get('/conversations/:id', async (req, res) => {
    const conv = await findConversation(deps.pool, conversationId(req.params.id), areaLimit(req));
    if (!conv) throw new HttpError(404, 'not_found', `no conversation ${req.params.id}`);
    sendJson(res, conv);
  });
  r.patch('/conversations/:id', async (req, res) => {
    const id = await visible(req);
    const patch = parse(patchConversationSchema, req.body ?? {}, 'invalid_request');
    const done = await patchConversation(deps.pool, id, patch);
    if (!done) throw new HttpError(404, 'not_found', `no conversation ${id}`);
    deps.publish({ type: 'conversation.updated', conversationId: id, channelId: done.channelId, status: done.status, assignee: done.assignee });
    const conv = await findConversation(deps.pool, id);
    if (!conv) throw new HttpError(404, 'not_found', `no conversation ${id}`);
    sendJson(res, conv);
  });
  r.get('/conversations/:id/messages', folding(async (req, res) => {
    const id = await visible(req);
    const q = parse(pageQuery, req.query, 'invalid_query');
    const cursor = cursorOf(q.cursor);
    if (cursor?.t === null) throw new HttpError(400, 'invalid_cursor', 'cursor is not one this API gave out');
    const liveToken = owedLiveness(req);
    const result = await listConversationMessages(deps.pool, id, { limit: q.limit, cursor, liveToken });
    if (result.rows === 0) {
      await refuseDeadToken(deps.pool, res, liveToken);
      if (!(await findConversation(deps.pool, id))) throw new HttpError(404, 'not_found', `no conversation ${id}`);
    }
    sendJson(res, result.json);
  }));
  r.post('/conversations/:id/read', async (req, res) => {
    const id = await visible(req);
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
