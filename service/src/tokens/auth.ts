// Authentication for /v1 and /admin: the bootstrap API_TOKEN, or a scoped token whose liveness
// Postgres checks on every request, so a revoked token is refused on the next request by every
// web process with nothing to invalidate. A token's scopes and areas never change: a process
// keeps those of the tokens it saw, and the inbox list checks liveness inside its own statement
// (`Principal.livenessOwed`) instead of a round trip of its own; every other route looks it up.
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import { HttpError } from '../http/errors.js';
import type { Pool } from '../store/pool.js';
import { BOOTSTRAP, foldsLiveness, hasScope, principalOf, scopeFor, setPrincipal, type Principal, type Scope } from './principal.js';
import { findLiveToken, hashToken as digest, TOKEN_PREFIX, touchToken } from './store.js';

/** `last_used_at` is written at most this often per token and process: a busy token costs no write per request. */
const TOUCH_EVERY_MS = 60_000;
/** Tokens whose scopes a process keeps (the oldest seen is dropped first). */
const KNOWN_TOKENS = 10_000;

export interface TokenAuthOptions {
  readonly pool: Pool;
  /** The bootstrap admin token (API_TOKEN). */
  readonly apiToken: string;
  readonly onTouchError?: (err: Error) => void;
}

export class TokenAuth {
  private readonly bootstrap: Buffer;
  private readonly touched = new Map<number, number>();
  /** By the secret's SHA-256 (base64): what a token found live was given. */
  private readonly known = new Map<string, Principal>();

  constructor(private readonly o: TokenAuthOptions) {
    this.bootstrap = digest(o.apiToken);
  }

  /**
   * The request's principal, or null. The token comes as `Authorization: Bearer …`, or with
   * `allowQuery` as `?access_token=` (browsers' EventSource and WebSocket set no headers). With
   * `foldable`, a token this process has seen live is not looked up: the principal owes the
   * liveness check to the route's statement.
   */
  async resolve(req: IncomingMessage, allowQuery = false, foldable = false): Promise<Principal | null> {
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    let given = m?.[1]?.trim();
    if (given === undefined && allowQuery) given = new URL(req.url ?? '/', 'http://x').searchParams.get('access_token') ?? undefined;
    if (given === undefined || given === '') return null;
    const hash = digest(given);
    // Comparing digests keeps the comparison constant-time whatever the lengths.
    if (timingSafeEqual(hash, this.bootstrap)) return BOOTSTRAP;
    if (!given.startsWith(TOKEN_PREFIX) || given.length > 200) return null;
    const key = hash.toString('base64');
    const seen = this.known.get(key);
    // Only for a token the route will not refuse for its scope: a revoked token gets 401, never 403.
    if (foldable && seen && hasScope(seen, 'conversations:read')) {
      this.touch(seen.tokenId!);
      return { ...seen, livenessOwed: true };
    }
    const t = await findLiveToken(this.o.pool, hash);
    if (!t) return null;
    this.touch(t.id);
    const p: Principal = { tokenId: t.id, scopes: new Set(t.scopes), areaIds: t.areaIds, expiresAt: t.expiresAt?.getTime() ?? null };
    if (!seen) {
      if (this.known.size >= KNOWN_TOKENS) this.known.delete(this.known.keys().next().value!);
      this.known.set(key, p);
    }
    return p;
  }

  private touch(id: number): void {
    const now = Date.now();
    if (now - (this.touched.get(id) ?? 0) < TOUCH_EVERY_MS) return;
    this.touched.set(id, now);
    touchToken(this.o.pool, id).catch((err: Error) => this.o.onTouchError?.(err));
  }

  /** Finds the principal and keeps it on the request; refuses nothing (the rate limiter reads it first). */
  identify(opts: { allowQuery?: boolean } = {}): RequestHandler {
    return (req, _res, next) => {
      this.resolve(req, opts.allowQuery === true, foldsLiveness(req.method, req.originalUrl)).then((p) => {
        if (p) setPrincipal(req, p);
        next();
      }, next);
    };
  }

  /** 401 without a principal; 403 when it lacks the scope the route needs (`scope`, or the /v1 route table's). */
  require(scope?: Scope): RequestHandler {
    return (req, res, next) => {
      const p = principalOf(req);
      if (!p) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="wa-router"');
        next(new HttpError(401, 'unauthorized', 'a valid bearer token is required'));
        return;
      }
      const needed = scope ?? scopeFor(req.method, req.path);
      if (!hasScope(p, needed)) {
        next(new HttpError(403, 'forbidden', `this token lacks the ${needed} scope`, { requiredScope: needed }));
        return;
      }
      next();
    };
  }
}
