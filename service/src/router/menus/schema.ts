// A channel's menu, validated on save against Meta's interactive-message limits, each
// problem naming its field. Rendering is automatic: up to 3 options are reply buttons
// (title ≤ 20, body ≤ 1024), 4-10 a list (row title ≤ 24, description ≤ 72, body ≤ 4096).
import { z } from 'zod';

/** Meta's documented limits for interactive messages (reply buttons and lists). */
export const LIMITS = {
  buttons: { max: 3, title: 20, body: 1024, id: 256 },
  list: { rows: 10, title: 24, description: 72, body: 4096, button: 20, id: 200 },
} as const;

export interface MenuOption {
  id: string;
  title: string;
  description?: string | undefined;
  /** The text above this option's sub-menu; its title when absent. */
  prompt?: string | undefined;
  areaId?: number | undefined;
  options?: MenuOption[] | undefined;
}

const optionSchema: z.ZodType<MenuOption> = z.lazy(() =>
  z
    .object({
      id: z.string().trim().min(1).max(LIMITS.list.id),
      title: z.string().trim().min(1).max(LIMITS.list.title),
      description: z.string().trim().min(1).max(LIMITS.list.description).optional(),
      prompt: z.string().trim().min(1).max(LIMITS.list.body).optional(),
      areaId: z.number().int().positive().optional(),
      options: z.array(optionSchema).optional(),
    })
    .strict()
    .meta({ id: 'MenuOption', description: 'Leads to an area (`areaId`) or to a sub-menu (`options`)' }),
);

export const menuSchema = z
  .object({
    greeting: z.string().trim().min(1).max(LIMITS.list.body),
    options: z.array(optionSchema),
    invalidReply: z.string().trim().min(1).max(LIMITS.buttons.body).default('Sorry, I did not understand. Please choose one of the options.'),
    /** An idle customer starts over after this long. */
    timeoutSeconds: z.number().int().min(30).max(7 * 86_400).default(1_800),
    /** Invalid answers in a row before the conversation goes to `fallbackAreaId` (or starts over). */
    maxInvalid: z.number().int().min(1).max(20).default(3),
    fallbackAreaId: z.number().int().positive().optional(),
    /** Words that start the menu over; `0` always goes back one level. */
    restartWords: z.array(z.string().trim().min(1).max(40)).min(1).default(['menu']),
    /** The list button's label. */
    buttonLabel: z.string().trim().min(1).max(LIMITS.list.button).default('Options'),
  })
  .strict()
  .superRefine((menu, ctx) => {
    const seen = new Map<string, string>();
    const level = (options: MenuOption[], path: (string | number)[], body: string, bodyPath: (string | number)[]) => {
      if (options.length === 0) ctx.addIssue({ code: 'custom', path, message: 'a menu level needs at least one option' });
      if (options.length > LIMITS.list.rows) ctx.addIssue({ code: 'custom', path, message: `at most ${LIMITS.list.rows} options per level (a WhatsApp list holds 10 rows)` });
      const buttons = options.length <= LIMITS.buttons.max;
      const bodyMax = buttons ? LIMITS.buttons.body : LIMITS.list.body;
      if (body.length > bodyMax) ctx.addIssue({ code: 'custom', path: bodyPath, message: `at most ${bodyMax} characters when this level is sent as ${buttons ? 'reply buttons' : 'a list'}` });
      options.forEach((o, i) => {
        const at = [...path, i];
        if (buttons && o.title.length > LIMITS.buttons.title) ctx.addIssue({ code: 'custom', path: [...at, 'title'], message: `at most ${LIMITS.buttons.title} characters: a level of ${options.length} options is sent as reply buttons` });
        const prior = seen.get(o.id);
        if (prior !== undefined) ctx.addIssue({ code: 'custom', path: [...at, 'id'], message: `duplicate id (also at ${prior})` });
        else seen.set(o.id, at.join('.'));
        const hasArea = o.areaId !== undefined;
        const hasChildren = o.options !== undefined;
        if (hasArea === hasChildren) ctx.addIssue({ code: 'custom', path: at, message: 'an option has either areaId or options, not both and not neither' });
        if (o.options) level(o.options, [...at, 'options'], o.prompt ?? o.title, [...at, o.prompt !== undefined ? 'prompt' : 'title']);
      });
    };
    level(menu.options, ['options'], menu.greeting, ['greeting']);
  });

export type Menu = z.output<typeof menuSchema>;

export const menuVersionSchema = z
  .object({ channelId: z.number().int().positive(), version: z.number().int().positive(), menu: menuSchema, createdAt: z.iso.datetime() })
  .meta({ id: 'MenuVersion', description: 'Each save is a new version; conversations in the menu move to it at their next message' });

/** Every areaId the menu names, with its field path, for the existence check. */
export function areaRefs(menu: Menu): { areaId: number; field: string }[] {
  const out: { areaId: number; field: string }[] = [];
  const walk = (options: MenuOption[], path: string) =>
    options.forEach((o, i) => {
      if (o.areaId !== undefined) out.push({ areaId: o.areaId, field: `${path}.${i}.areaId` });
      if (o.options) walk(o.options, `${path}.${i}.options`);
    });
  walk(menu.options, 'options');
  if (menu.fallbackAreaId !== undefined) out.push({ areaId: menu.fallbackAreaId, field: 'fallbackAreaId' });
  return out;
}
