// Bearer-token auth for /v1 and /admin.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import { HttpError } from './errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Checks a request's token: `Authorization: Bearer …`, or with `allowQuery` an `access_token`
 * query parameter (browsers' EventSource and WebSocket cannot set headers).
 */
export function tokenChecker(token: string, opts: { allowQuery?: boolean } = {}): (req: IncomingMessage) => boolean {
  // Comparing digests keeps the comparison constant-time whatever the lengths.
  const expected = digest(token);
  return (req) => {
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    let given = m?.[1]?.trim();
    if (given === undefined && opts.allowQuery) given = new URL(req.url ?? '/', 'http://x').searchParams.get('access_token') ?? undefined;
    return given !== undefined && timingSafeEqual(digest(given), expected);
  };
}

export function bearerAuth(token: string, opts: { allowQuery?: boolean } = {}): RequestHandler {
  const ok = tokenChecker(token, opts);
  return (req, res, next) => {
    if (!ok(req)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="wa-router"');
      next(new HttpError(401, 'unauthorized', 'a valid bearer token is required'));
      return;
    }
    next();
  };
}
