// POST /v1/messages: validate, persist 'pending' with its outbox row, enqueue, 202.
import { createHash } from 'node:crypto';
import { Router } from 'express';
import { z } from 'zod';
import type { OutboundQueues } from '../../queue/outbound.js';
import { createOutbound, type OutboxCleaner } from '../../store/outbound-store.js';
import type { Pool } from '../../store/pool.js';
import { conversationWith, inAreas } from '../../store/conversations.js';
import { areaLimit, principalOf, type Principal } from '../../tokens/principal.js';
import { HttpError } from '../errors.js';
import type { Publish } from '../../events/hub.js';
import type { Logger } from '../../log.js';
import { messageStatusSchema } from '../views.js';
import { defineOperations } from '../../openapi/operation.js';
import { STORED_MEDIA_FIELD } from '../../media/send-stored.js';

const media = z
  .object({ id: z.string().min(1).optional().meta({ description: "Meta's media id, or our stored media's `mediaId` (an upload's, or a received message's `media.mediaId`): the sender sends it with a Meta id of the sending number, uploading our copy when needed" }), link: z.url().optional(), caption: z.string().max(1024).optional(), filename: z.string().max(240).optional() })
  .refine((m) => Boolean(m.id) !== Boolean(m.link), 'give exactly one of id or link');

const PHONE = /^\+?\d{6,20}$/;
/** A business-scoped user id: country code, '.', alphanumerics (a parent BSUID has `ENT.` inside). */
export const BSUID = /^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$/;

const sendSchema = z
  .object({
    /** Our channel id, or Meta's phone_number_id; optional when one channel is configured. */
    channelId: z.number().int().positive().optional(),
    phoneNumberId: z.string().regex(/^\d+$/).optional(),
    /** The phone number; a BSUID is accepted here too and sent as Meta's `recipient`. */
    to: z.string().refine((v) => PHONE.test(v) || BSUID.test(v), 'an international phone number, digits only (a leading + is allowed), or a business-scoped user id like US.13491208655302741918').optional(),
    /** Meta's field for a business-scoped user id (a user whose number we do not have). `to` wins when both are given, as at Meta. */
    recipient: z.string().regex(BSUID, 'a business-scoped user id like US.13491208655302741918').optional(),
    type: z.enum(['text', 'template', 'image', 'audio', 'video', 'document', 'sticker', 'location', 'contacts', 'interactive', 'reaction']),
    text: z.object({ body: z.string().min(1).max(4096), preview_url: z.boolean().optional() }).optional(),
    template: z.object({ name: z.string().min(1), language: z.object({ code: z.string().min(2) }), components: z.array(z.record(z.string(), z.unknown())).optional() }).optional(),
    image: media.optional(),
    audio: media.optional(),
    video: media.optional(),
    document: media.optional(),
    sticker: media.optional(),
    location: z.object({ latitude: z.number().min(-90).max(90), longitude: z.number().min(-180).max(180), name: z.string().optional(), address: z.string().optional() }).optional(),
    contacts: z.array(z.record(z.string(), z.unknown())).min(1).optional(),
    interactive: z.object({ type: z.string().min(1) }).passthrough().optional(),
    reaction: z.object({ message_id: z.string().min(1), emoji: z.string().max(16) }).optional(),
    context: z.object({ message_id: z.string().min(1) }).optional(),
    bizOpaqueCallbackData: z.string().max(400).optional(),
  })
  .superRefine((b, ctx) => {
    if (b.to === undefined && b.recipient === undefined) ctx.addIssue({ code: 'custom', path: ['to'], message: 'give to (a phone number) or recipient (a business-scoped user id)' });
    if (b[b.type] === undefined) ctx.addIssue({ code: 'custom', path: [b.type], message: `type is ${b.type}: the ${b.type} object is required` });
  });

export type SendRequest = z.infer<typeof sendSchema>;

function preview(b: SendRequest): string | null {
  if (b.type === 'text') return b.text!.body;
  if (b.type === 'template') return `[template ${b.template!.name}]`;
  const m = (b as Record<string, unknown>)[b.type] as { caption?: string } | undefined;
  if (b.type === 'reaction') return b.reaction!.emoji;
  return m && typeof m === 'object' && 'caption' in m ? (m.caption ?? null) : null;
}

/**
 * Idempotency-Keys are per token (the bootstrap API_TOKEN is one scope): a key is the caller's
 * own, so no other caller can collide with it or be answered with its message. Per token rather
 * than per channel, as several tokens (areas) write on one channel.
 */
const idempotencyScope = (p: Principal) => (p.tokenId === null ? 'bootstrap' : `token:${p.tokenId}`);

/** SHA-256 of the request with its object keys sorted, so the order a client writes them in does not matter. */
function fingerprint(request: unknown): Buffer {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canonical) : v !== null && typeof v === 'object' ? Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, canonical(x)])) : v;
  return createHash('sha256').update(JSON.stringify(canonical(request))).digest();
}

export const outboundOperations = defineOperations('Messages', [
  {
    method: 'post', path: '/v1/messages', summary: 'Send a message', body: sendSchema, errors: [413, 422],
    description: "Stored as `pending` before the answer, then sent through the channel's queue; follow it with `GET /v1/messages/{id}` or the `message.status` event. The body is Meta's send payload with `channelId`/`phoneNumberId` to pick the number.",
    headers: z.object({ 'Idempotency-Key': z.string().min(1).max(255).optional().meta({ description: "A key of this token's (the bootstrap token has its own) repeated with the same request answers with the first message instead of sending again; with a different request, 422 `idempotency_key_reused`" }) }),
    responses: {
      202: {
        schema: z.object({ id: z.number().int().positive(), status: messageStatusSchema }).meta({ id: 'SendAccepted' }),
        headers: z.object({
          Location: z.string().meta({ example: '/v1/messages/42' }),
          'Idempotent-Replayed': z.literal('true').optional().meta({ description: 'Present when the Idempotency-Key was seen before: the answer is the first message, as it is now' }),
        }),
      },
    },
  },
]);

export interface OutboundRouteDeps {
  readonly pool: Pool;
  readonly queues: OutboundQueues;
  readonly outbox: OutboxCleaner;
  readonly log: Logger;
  readonly publish?: Publish;
  readonly resolveChannel: (by: { channelId?: number | undefined; phoneNumberId?: string | undefined }) => Promise<number | null>;
  /** Our stored media a media `id` names (null: Meta's id, sent as it is); throws an HttpError for media that cannot be sent. */
  readonly storedMedia?: (id: string, channelId: number, areaIds: readonly number[] | null) => Promise<number | null>;
}

const MEDIA_TYPES = new Set(['image', 'audio', 'video', 'document', 'sticker']);

export function outboundRoutes(deps: OutboundRouteDeps): Router {
  const r = Router();
  r.post('/messages', async (req, res) => {
    const parsed = sendSchema.safeParse(req.body);
    if (!parsed.success) throw new HttpError(400, 'invalid_message', 'the message is not valid', parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })));
    const b = parsed.data;
    const channelId = await deps.resolveChannel({ channelId: b.channelId, phoneNumberId: b.phoneNumberId });
    if (channelId === null) throw new HttpError(422, 'unknown_channel', 'no such channel: give channelId or phoneNumberId of a configured channel');
    const key = req.get('Idempotency-Key');
    if (key !== undefined && (key.length === 0 || key.length > 255)) throw new HttpError(400, 'invalid_idempotency_key', 'Idempotency-Key must be 1 to 255 characters');
    let to = (b.to ?? b.recipient!).replace(/^\+/, '');
    let toUserId = BSUID.test(to);
    if (toUserId) {
      // Meta's advice: send to the number when it is known, so webhooks keep carrying it.
      const known = await deps.pool.query<{ wa_id: string }>(`SELECT wa_id FROM contacts WHERE user_id = $1 AND wa_id ~ '^[0-9]+$' ORDER BY updated_at DESC LIMIT 1`, [to]);
      if (known.rows[0]) {
        to = known.rows[0].wa_id;
        toUserId = false;
      }
    }
    const areas = areaLimit(req);
    if (areas) {
      // A token limited to areas writes only into its areas' conversations, never starts one.
      const conv = await conversationWith(deps.pool, channelId, to);
      if (conv === null || !(await inAreas(deps.pool, conv, areas))) throw new HttpError(404, 'not_found', 'no conversation with this recipient in the areas of this token');
    }
    let content = b[b.type] as Record<string, unknown>;
    const ours = MEDIA_TYPES.has(b.type) && typeof content.id === 'string' ? await deps.storedMedia?.(content.id, channelId, areas) : null;
    if (ours) {
      // The sender puts a Meta id of this number in its place (uploading our copy when needed).
      const { id: _ours, ...rest } = content;
      content = { ...rest, [STORED_MEDIA_FIELD]: ours };
    }
    const payload: Record<string, unknown> = { messaging_product: 'whatsapp', recipient_type: 'individual', ...(toUserId ? { recipient: to } : { to }), type: b.type, [b.type]: content };
    if (b.context) payload.context = b.context;
    if (b.bizOpaqueCallbackData) payload.biz_opaque_callback_data = b.bizOpaqueCallbackData;
    const idempotency = key === undefined ? null : { scope: idempotencyScope(principalOf(req)!), key, fingerprint: fingerprint({ channelId, message: { ...b, channelId: undefined, phoneNumberId: undefined } }) };
    const ref = await createOutbound(deps.pool, { channelId, to, toUserId, type: b.type, body: preview(b), replyToWamid: b.context?.message_id ?? null, payload, idempotency });
    if (!ref.sameRequest) throw new HttpError(422, 'idempotency_key_reused', 'this Idempotency-Key was used for a different request; use a new key for a new message');
    if (ref.created) {
      deps.publish?.([
        { type: 'message.created', messageId: ref.id, conversationId: ref.conversationId, channelId: ref.channelId, direction: 'outbound', messageType: b.type },
        { type: 'conversation.updated', conversationId: ref.conversationId, channelId: ref.channelId },
      ]);
      // The fast path; if it fails, the outbox relay enqueues the message a moment later.
      try {
        await deps.queues.enqueue([{ messageId: ref.id, channelId: ref.channelId, to }]);
        deps.outbox.done(ref.id);
      } catch (err) {
        deps.log.warn({ messageId: ref.id, err: (err as Error).message }, 'enqueue after persist failed; the outbox relay will retry');
      }
    }
    let status = 'pending';
    if (!ref.created) {
      // A repeated Idempotency-Key answers with the original message, as it is now.
      const { rows } = await deps.pool.query<{ status: string }>('SELECT status FROM messages WHERE id = $1', [ref.id]);
      status = rows[0]?.status ?? status;
      res.setHeader('Idempotent-Replayed', 'true');
    }
    res.status(202).location(`/v1/messages/${ref.id}`).json({ id: ref.id, status });
  });
  return r;
}
