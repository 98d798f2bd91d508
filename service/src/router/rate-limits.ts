// Request limits shared by every web replica through Redis. /v1 and /admin: per token and IP,
// with the standard RateLimit headers and our JSON 429. The webhook: Meta has no fixed IPs and
// a 429 starts its backoff, so a request with a valid signature is never limited; requests
// without a signature, and those whose signature failed (counted after the fact), are limited
// per IP.
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import type { Redis } from 'ioredis';
import { RedisStore, type RedisReply } from 'rate-limit-redis';
import { errorBody, HttpError, sendJson } from '../http/errors.js';

export interface RateLimitOptions {
  readonly redis: Redis;
  readonly prefix: string;
  /** Requests per minute; 0 turns the limit off. */
  readonly perMinute: number;
}

// The web's connection queues nothing while disconnected (a webhook must fail fast), so the
// store waits for it to be ready rather than failing its first commands at boot.
async function ready(redis: Redis): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('redis not ready')), 5_000);
    redis.once('ready', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

const store = (o: RateLimitOptions, name: string) =>
  new RedisStore({
    prefix: `${o.prefix}:ratelimit:${name}:`,
    sendCommand: async (command: string, ...args: string[]) => {
      await ready(o.redis);
      return o.redis.call(command, ...args) as Promise<RedisReply>;
    },
  });

const tokenKey = (authorization: string | undefined) => (authorization ? createHash('sha256').update(authorization).digest('base64url').slice(0, 16) : 'anonymous');

export function apiRateLimit(o: RateLimitOptions): RequestHandler {
  if (o.perMinute === 0) return (_req, _res, next) => next();
  return rateLimit({
    windowMs: 60_000,
    limit: o.perMinute,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    store: store(o, 'api'),
    keyGenerator: (req) => `${ipKeyGenerator(req.ip ?? 'unknown')}|${tokenKey(req.headers.authorization)}`,
    // Redis away: serve rather than refuse (the API works without the limiter).
    passOnStoreError: true,
    handler: (_req, _res, next, options) => next(new HttpError(options.statusCode, 'rate_limited', `more than ${o.perMinute} requests a minute; retry after the RateLimit reset`)),
  });
}

/** Wraps the raw webhook handler: limits unsigned and badly signed requests per IP only. */
export function webhookRateLimit(o: RateLimitOptions): (req: IncomingMessage, res: ServerResponse, next: () => void) => void {
  if (o.perMinute === 0) return (_req, _res, next) => next();
  const s = store(o, 'webhook');
  s.init({ windowMs: 60_000 } as Parameters<RedisStore['init']>[0]);
  const hit = (ip: string) => s.increment(ip).catch(() => ({ totalHits: 0, resetTime: undefined }));
  return (req, res, next) => {
    const ip = ipKeyGenerator(req.socket.remoteAddress ?? 'unknown');
    if (req.headers['x-hub-signature-256'] === undefined) {
      void hit(ip).then(({ totalHits, resetTime }) => {
        if (totalHits <= o.perMinute) return next();
        const retry = resetTime ? Math.max(1, Math.ceil((resetTime.getTime() - Date.now()) / 1000)) : 60;
        req.resume();
        sendJson(res, 429, errorBody('rate_limited', 'too many unsigned webhook requests from this address'), { 'retry-after': String(retry) });
      });
      return;
    }
    res.once('finish', () => {
      if (res.statusCode === 401) void hit(ip);
    });
    next();
  };
}
