// POST/GET /v1/tokens, DELETE /v1/tokens/:id (admin scope, see principal.ts).
import { Router } from 'express';
import { z } from 'zod';
import type { Publish } from '../events/hub.js';
import { HttpError } from '../http/errors.js';
import { parseBody, pathId } from '../router/http-util.js';
import type { Pool } from '../store/pool.js';
import { SCOPES } from './principal.js';
import { createToken, listTokens, revokeToken } from './store.js';
import { defineOperations } from '../openapi/operation.js';

export const scopeSchema = z.enum(SCOPES);

export const createTokenSchema = z
  .object({
    name: z.string().trim().min(1).max(100),
    scopes: z.array(scopeSchema).min(1).transform((s) => [...new Set(s)]),
    /** Limits the token to conversations assigned to these areas. */
    areaIds: z.array(z.number().int().positive()).min(1).max(100).optional(),
    expiresAt: z.iso.datetime({ offset: true }).refine((t) => Date.parse(t) > Date.now(), 'must be in the future').optional(),
  })
  .strict()
  .superRefine((b, ctx) => {
    // An admin can mint tokens for any area: limiting it to some would be a fence with a gate.
    if (b.areaIds && b.scopes.includes('admin')) ctx.addIssue({ code: 'custom', path: ['areaIds'], message: 'an admin token cannot be limited to areas' });
  });

export const tokenSchema = z.object({
  id: z.number().int(),
  name: z.string(),
  prefix: z.string(),
  scopes: z.array(scopeSchema),
  areaIds: z.array(z.number().int()).nullable(),
  expiresAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
  createdAt: z.string(),
});
/** The create answer: the only time the token itself is shown. */
export const createdTokenSchema = tokenSchema.extend({ token: z.string() });
export const tokenListSchema = z.object({ data: z.array(tokenSchema) });

export const tokenOperations = defineOperations('Tokens', [
  {
    method: 'post', path: '/v1/tokens', summary: 'Create a scoped API token (shown once in the answer)', body: createTokenSchema,
    description: 'Stored as a SHA-256 hash: the `token` field of this answer is the only time it is shown.',
    responses: { 201: createdTokenSchema },
  },
  { method: 'get', path: '/v1/tokens', summary: 'The API tokens (never their secrets)', responses: { 200: tokenListSchema } },
  {
    method: 'delete', path: '/v1/tokens/:id', summary: 'Revoke a token, at once on every web process',
    params: z.object({ id: z.coerce.number().int().positive() }), responses: { 204: { description: 'Revoked' } },
  },
]);

export interface TokenRouteDeps {
  readonly pool: Pool;
  /** Tells every web process, so event streams opened with a revoked token end at once. */
  readonly publish: Publish;
}

export function tokenRoutes(deps: TokenRouteDeps): Router {
  const r = Router();
  r.post('/tokens', async (req, res) => {
    const b = parseBody(createTokenSchema, req.body);
    if (b.areaIds) {
      const { rows } = await deps.pool.query<{ id: number }>('SELECT id FROM areas WHERE id = ANY ($1::bigint[])', [b.areaIds]);
      const missing = b.areaIds.filter((id) => !rows.some((row) => row.id === id));
      if (missing.length) throw new HttpError(400, 'invalid_request', 'invalid areaIds', [{ field: 'areaIds', message: `no area ${missing.join(', ')}` }]);
    }
    res.status(201).json(await createToken(deps.pool, { name: b.name, scopes: b.scopes, areaIds: b.areaIds ?? null, expiresAt: b.expiresAt ?? null }));
  });
  r.get('/tokens', async (_req, res) => {
    res.json({ data: await listTokens(deps.pool) });
  });
  r.delete('/tokens/:id', async (req, res) => {
    const id = pathId(req.params.id, 'token');
    if (!(await revokeToken(deps.pool, id))) throw new HttpError(404, 'not_found', `no live token ${id}`);
    deps.publish({ type: 'token.revoked', tokenId: id });
    res.status(204).end();
  });
  return r;
}
