// Bearer-token auth for /v1 and /admin.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { HttpError } from './errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

export function bearerAuth(token: string): RequestHandler {
  // Comparing digests keeps the comparison constant-time whatever the lengths.
  const expected = digest(token);
  return (req, res, next) => {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(header);
    if (!m || !timingSafeEqual(digest(m[1]!.trim()), expected)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="wa-router"');
      next(new HttpError(401, 'unauthorized', 'a valid bearer token is required'));
      return;
    }
    next();
  };
}
