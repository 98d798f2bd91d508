// api_tokens: created with a random secret shown once, found by the secret's SHA-256, revoked.
import { createHash, randomBytes } from 'node:crypto';
import { statement, type Pool } from '../store/pool.js';
import type { Scope } from './principal.js';

export const TOKEN_PREFIX = 'war_';

export const hashToken = (token: string): Buffer => createHash('sha256').update(token).digest();

export interface TokenView {
  id: number;
  name: string;
  /** The token's first characters, to recognize it; never enough to use it. */
  prefix: string;
  scopes: Scope[];
  areaIds: number[] | null;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
  createdAt: string;
}

interface TokenRow {
  id: number;
  name: string;
  prefix: string;
  scopes: Scope[];
  area_ids: number[] | null;
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
  created_at: Date;
}

const iso = (d: Date | null) => d?.toISOString() ?? null;
const view = (r: TokenRow): TokenView => ({
  id: r.id,
  name: r.name,
  prefix: r.prefix,
  scopes: r.scopes,
  areaIds: r.area_ids?.map(Number) ?? null,
  expiresAt: iso(r.expires_at),
  lastUsedAt: iso(r.last_used_at),
  revokedAt: iso(r.revoked_at),
  createdAt: r.created_at.toISOString(),
});

const COLUMNS = 'id, name, prefix, scopes, area_ids, expires_at, last_used_at, revoked_at, created_at';

export async function createToken(pool: Pool, t: { name: string; scopes: Scope[]; areaIds: number[] | null; expiresAt: string | null }): Promise<TokenView & { token: string }> {
  // 256 bits: unguessable, and long enough that a plain SHA-256 (no salt, no stretching) is safe to keep.
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  const { rows } = await pool.query<TokenRow>(
    `INSERT INTO api_tokens (name, token_hash, prefix, scopes, area_ids, expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
    [t.name, hashToken(token), token.slice(0, TOKEN_PREFIX.length + 8), t.scopes, t.areaIds, t.expiresAt],
  );
  return { ...view(rows[0]!), token };
}

export async function listTokens(pool: Pool): Promise<TokenView[]> {
  const { rows } = await pool.query<TokenRow>(`SELECT ${COLUMNS} FROM api_tokens ORDER BY id`);
  return rows.map(view);
}

/** True when a live token was revoked now; false when there is none (or it was revoked before). */
export async function revokeToken(pool: Pool, id: number): Promise<boolean> {
  const res = await pool.query('UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL', [id]);
  return (res.rowCount ?? 0) > 0;
}

/** The live token with this secret's hash (hashToken), or null (unknown, revoked or expired). */
export async function findLiveToken(pool: Pool, hash: Buffer): Promise<{ id: number; scopes: Scope[]; areaIds: number[] | null; expiresAt: Date | null } | null> {
  // Every request with a scoped token runs this.
  const { rows } = await pool.query<{ id: number; scopes: Scope[]; area_ids: number[] | null; expires_at: Date | null }>(statement(
    pool,
    'SELECT id, scopes, area_ids, expires_at FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())',
    [hash],
  ));
  const r = rows[0];
  return r ? { id: r.id, scopes: r.scopes, areaIds: r.area_ids?.map(Number) ?? null, expiresAt: r.expires_at } : null;
}

/** The condition a statement adds to answer only while token `param` is live (neither revoked nor expired). */
export const tokenLive = (param: string) => `EXISTS (SELECT 1 FROM api_tokens t WHERE t.id = ${param} AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now()))`;

/** Which of these tokens are still live (neither revoked nor expired). */
export async function liveTokenIds(pool: Pool, ids: readonly number[]): Promise<Set<number>> {
  const { rows } = await pool.query<{ id: string | number }>(
    'SELECT id FROM api_tokens WHERE id = ANY ($1::bigint[]) AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())',
    [ids],
  );
  return new Set(rows.map((r) => Number(r.id)));
}

export async function touchToken(pool: Pool, id: number): Promise<void> {
  await pool.query('UPDATE api_tokens SET last_used_at = now() WHERE id = $1', [id]);
}
