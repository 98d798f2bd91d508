// The agent API's answers as zod schemas: the OpenAPI document is generated from them, and the
// tests check real answers against that document.
import { z } from 'zod';

const id = z.number().int().positive();
const time = z.iso.datetime();

export const contactSchema = z
  .object({
    id,
    waId: z.string().meta({ description: "The customer's WhatsApp id (their number), or a business-scoped user id when the number is unknown" }),
    profileName: z.string().nullable(),
    userId: z.string().nullable().meta({ description: 'Business-scoped user id (BSUID)' }),
    username: z.string().nullable(),
  })
  .meta({ id: 'Contact' });

export const messageStatusSchema = z.string().meta({ description: '`pending`, `sent`, `delivered`, `read` or `failed` (received for inbound messages)' });
const graphErrorSchema = z.object({ code: z.number().int().nullable(), title: z.string().nullable(), details: z.string().nullable() }).meta({ id: 'GraphError' });

export const messageSummarySchema = z
  .object({ id, wamid: z.string().nullable(), direction: z.enum(['inbound', 'outbound']), type: z.string(), body: z.string().nullable(), status: messageStatusSchema, timestamp: time })
  .meta({ id: 'MessageSummary' });

export const routeSchema = z
  .object({ state: z.enum(['menu', 'assigned', 'closed']), areaId: id.nullable(), assignedAt: time.nullable() })
  .meta({ id: 'Route', description: "Where the router has the conversation: in the channel's menu, or assigned to an area" });

export const conversationSchema = z
  .object({
    id,
    channelId: id,
    contact: contactSchema,
    lastMessage: messageSummarySchema.nullable(),
    lastAgentMessage: messageSummarySchema.nullable(),
    unreadCount: z.number().int().min(0),
    status: z.enum(['open', 'closed']).meta({ description: 'A new customer message reopens a closed conversation' }),
    assignee: z.string().nullable().meta({ description: 'The agent it is assigned to (an opaque id of yours)' }),
    lastMessageAt: time.nullable(),
    lastInboundAt: time.nullable(),
    route: routeSchema,
    createdAt: time,
    updatedAt: time,
  })
  .meta({ id: 'Conversation' });

const messageFields = {
  id,
  wamid: z.string().nullable(),
  channelId: id,
  conversationId: id,
  contact: contactSchema,
  direction: z.enum(['inbound', 'outbound']),
  source: z.string().meta({ description: '`webhook`, `api`, `history` (coexistence import), `echo` (sent from the WhatsApp Business app), ...' }),
  type: z.string(),
  body: z.string().nullable(),
  media: z
    .object({
      id: z.string().nullable(),
      mediaId: z.number().int().nullable().meta({ description: 'Our copy: send this file again with `image: { id: "<mediaId>" }` (or audio, video, document, sticker)' }),
      mimeType: z.string().nullable(), sha256: z.string().nullable(), filename: z.string().nullable(),
      status: z.enum(['pending', 'stored', 'failed']).nullable().meta({ description: 'Our copy in object storage' }),
      error: z.string().nullable().meta({ description: 'Why it could not be stored (`not_found`, `too_large`, `unsupported_mime`, `sha256_mismatch`, ...)' }),
      url: z.string().nullable().meta({ description: 'A signed, expiring link to GET /v1/media/{messageId} (409 until stored)' }),
    })
    .nullable(),
  location: z.object({ latitude: z.number(), longitude: z.number() }).nullable(),
  replyToWamid: z.string().nullable(),
  reaction: z.object({ toWamid: z.string().nullable(), emoji: z.string().nullable() }).nullable(),
  interactiveReplyId: z.string().nullable(),
  forwarded: z.boolean(),
  referral: z.unknown().meta({ description: "Meta's click-to-WhatsApp ad referral, as received" }),
  status: messageStatusSchema,
  timestamp: time,
  sentAt: time.nullable(),
  deliveredAt: time.nullable(),
  readAt: time.nullable(),
  failedAt: time.nullable(),
  error: graphErrorSchema.nullable(),
  createdAt: time,
};

/** A message as a conversation's page lists it. */
export const messageItemSchema = z.object(messageFields).meta({ id: 'MessageItem' });

/** One message with its status history and Meta's payload. */
export const messageSchema = z
  .object({
    ...messageFields,
    statuses: z.array(z.object({ status: z.string(), timestamp: time, recipientId: z.string().nullable(), error: graphErrorSchema.nullable(), receivedAt: time })),
    raw: z.unknown().meta({ description: "Meta's message object as received (inbound) or the request sent (outbound)" }),
  })
  .meta({ id: 'Message' });

/** A keyset page: give `nextCursor` back as `cursor` for the next one; null on the last. */
export const pageOf = <T extends z.ZodType>(item: T, name: string) => z.object({ data: z.array(item), nextCursor: z.string().nullable() }).meta({ id: name });
