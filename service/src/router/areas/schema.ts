// What an area looks like on the API: validated with zod, each problem naming its field.
import { z } from 'zod';

export const AREA_EVENTS = ['message.received', 'message.status', 'conversation.assigned', 'conversation.released'] as const;
export type AreaEvent = (typeof AREA_EVENTS)[number];

export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;

const isTimeZone = (tz: string) => {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
};
const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$|^24:00$/, 'expected HH:MM (00:00-24:00)');

export const hoursSchema = z
  .object({
    timeZone: z.string().refine(isTimeZone, 'not an IANA time zone (e.g. America/Sao_Paulo)'),
    intervals: z
      .array(z.object({ day: z.enum(WEEKDAYS), from: hhmm, to: hhmm }).refine((i) => i.from < i.to, { message: 'from must be before to', path: ['to'] }))
      .min(1),
    awayMessage: z.string().trim().min(1).max(4096),
  })
  .strict();
export type BusinessHours = z.output<typeof hoursSchema>;

const name = z.string().trim().min(1).max(200);
const webhookUrl = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).max(2048);
const channelIds = z.array(z.number().int().positive()).min(1).nullable();
const events = z.array(z.enum(AREA_EVENTS)).min(1).nullable();

export const createAreaSchema = z
  .object({ name, webhookUrl, channelIds: channelIds.optional(), events: events.optional(), hours: hoursSchema.nullable().optional() })
  .strict();

export const patchAreaSchema = z
  .object({
    name: name.optional(),
    webhookUrl: webhookUrl.optional(),
    channelIds: channelIds.optional(),
    events: events.optional(),
    hours: hoursSchema.nullable().optional(),
    /** true re-enables an area disabled by a 410 (or by false). */
    enabled: z.boolean().optional(),
  })
  .strict();

const time = z.iso.datetime();
export const areaViewSchema = z
  .object({
    id: z.number().int().positive(),
    name: z.string(),
    webhookUrl: z.string(),
    channelIds: z.array(z.number().int()).nullable().meta({ description: "null: every channel's conversations" }),
    events: z.array(z.enum(AREA_EVENTS)).nullable().meta({ description: 'null: every event type' }),
    hours: hoursSchema.nullable(),
    disabled: z.object({ at: time, reason: z.string().nullable() }).nullable(),
    createdAt: time,
    updatedAt: time,
  })
  .meta({ id: 'Area' });

export const createdAreaSchema = areaViewSchema.extend({ secret: z.string().meta({ description: 'The signing secret (`whsec_…`), shown this once' }) }).meta({ id: 'CreatedArea' });

export const deliverySchema = z
  .object({
    id: z.number().int().positive(),
    webhookId: z.string(),
    type: z.string(),
    conversationId: z.number().int().nullable(),
    status: z.string().meta({ description: '`pending`, `succeeded` or `dead`' }),
    attempts: z.array(z.object({ at: z.iso.datetime({ offset: true }), statusCode: z.number().int().nullable(), latencyMs: z.number(), error: z.string().nullable(), response: z.string().nullable() })),
    nextAttemptAt: time.nullable(),
    lastStatusCode: z.number().int().nullable(),
    lastError: z.string().nullable(),
    createdAt: time,
    finishedAt: time.nullable(),
  })
  .meta({ id: 'Delivery' });

export type CreateArea = z.output<typeof createAreaSchema>;
export type PatchArea = z.output<typeof patchAreaSchema>;
