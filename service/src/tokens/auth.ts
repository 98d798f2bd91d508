// Authentication for /v1 and /admin: the bootstrap API_TOKEN, or a scoped token looked up by
// its hash on every request. No cache: a revoked token is refused on the next request by every
// web process, with nothing to invalidate (the lookup is one primary-key-sized index probe).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import { HttpError } from '../http/errors.js';
import type { Pool } from '../store/pool.js';
import { BOOTSTRAP, hasScope, principalOf, scopeFor, setPrincipal, type Principal, type Scope } from './principal.js';
import { findLiveToken, TOKEN_PREFIX, touchToken } from './store.js';

const digest = (s: string) => createHash('sha256').update(s).digest();
/** `last_used_at` is written at most this often per token and process: a busy token costs no write per request. */
const TOUCH_EVERY_MS = 60_000;

export interface TokenAuthOptions {
  readonly pool: Pool;
  /** The bootstrap admin token (API_TOKEN). */
  readonly apiToken: string;
  readonly onTouchError?: (err: Error) => void;
}

export class TokenAuth {
  private readonly bootstrap: Buffer;
  private readonly touched = new Map<number, number>();

  constructor(private readonly o: TokenAuthOptions) {
    this.bootstrap = digest(o.apiToken);
  }

  /**
   * The request's principal, or null. The token comes as `Authorization: Bearer …`, or with
   * `allowQuery` as `?access_token=` (browsers' EventSource and WebSocket set no headers).
   */
  async resolve(req: IncomingMessage, allowQuery = false): Promise<Principal | null> {
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    let given = m?.[1]?.trim();
    if (given === undefined && allowQuery) given = new URL(req.url ?? '/', 'http://x').searchParams.get('access_token') ?? undefined;
    if (given === undefined || given === '') return null;
    // Comparing digests keeps the comparison constant-time whatever the lengths.
    if (timingSafeEqual(digest(given), this.bootstrap)) return BOOTSTRAP;
    if (!given.startsWith(TOKEN_PREFIX) || given.length > 200) return null;
    const t = await findLiveToken(this.o.pool, given);
    if (!t) return null;
    this.touch(t.id);
    return { tokenId: t.id, scopes: new Set(t.scopes), areaIds: t.areaIds, expiresAt: t.expiresAt?.getTime() ?? null };
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
      this.resolve(req, opts.allowQuery === true).then((p) => {
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
