// Request parsing shared by the router's routes: zod issues become a 400 naming each field.
import { z } from 'zod';
import { HttpError } from '../http/errors.js';

export function parseBody<T>(schema: z.ZodType<T>, value: unknown, code = 'invalid_request'): T {
  const r = schema.safeParse(value ?? {});
  if (!r.success) {
    const details = r.error.issues.map((i) => ({ field: i.path.join('.') || '(body)', message: i.message }));
    throw new HttpError(400, code, `invalid ${details.map((d) => d.field).join(', ')}`, details);
  }
  return r.data;
}

const idSchema = z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/** A path id; anything that is not one is simply not found. */
export function pathId(raw: string | undefined, what: string): number {
  const r = idSchema.safeParse(raw);
  if (!r.success) throw new HttpError(404, 'not_found', `no ${what} ${raw}`);
  return r.data;
}
