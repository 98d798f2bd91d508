// Request limits shared by every web replica through Redis.
// /v1 and /admin: requests that fail authentication are limited per IP (a client rotating bogus
// tokens gets no fresh budget); authenticated ones are not limited unless a per-token limit is set
// (an integration may send far more than 100 messages a minute: a channel allows 80 a second).
// The webhook: Meta has no fixed IPs and a 429 starts its backoff, so a request with a valid
// signature is never limited; unsigned and badly signed requests are limited per IP.
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import type { Redis } from 'ioredis';
import { RedisStore, type RedisReply } from 'rate-limit-redis';
import type { Counter } from 'prom-client';
import { errorBody, HttpError, sendJson } from '../http/errors.js';
import type { Logger } from '../log.js';

export interface RateLimitOptions {
  readonly redis: Redis;
  readonly prefix: string;
  /** Unauthenticated requests (and unsigned webhooks) per minute per IP; 0 turns the limit off. */
  readonly perMinute: number;
  readonly health: LimiterHealth;
}

/**
 * The limiters' view of Redis: while it is away every request is served unlimited, which is
 * logged once per outage (at warn, and once more when Redis answers again) and counted per
 * request, instead of a console line per request from the libraries.
 */
export class LimiterHealth {
  private down = false;

  constructor(
    private readonly log: Logger,
    private readonly unlimited: Counter,
  ) {}

  failed(err: Error): void {
    this.unlimited.inc();
    if (this.down) return;
    this.down = true;
    this.log.warn({ err: err.message }, 'rate limits: Redis unavailable; requests are served without limits until it answers');
  }

  ok(): void {
    if (!this.down) return;
    this.down = false;
    this.log.info('rate limits: Redis answers again; limits apply');
  }

  /** express-rate-limit's logger: store errors are reported above; anything else goes to the log. */
  get logger(): { warn: (...args: unknown[]) => void; error: (...args: unknown[]) => void } {
    const text = (args: unknown[]) => args.map((a) => (a instanceof Error ? a.message : String(a))).join(' ');
    return {
      warn: (...args) => this.log.warn(text(args)),
      error: (...args) => {
        if (!args.some((a) => typeof a === 'string' && a.includes('error from store'))) this.log.error(text(args));
      },
    };
  }
}

export interface ApiRateLimitOptions extends RateLimitOptions {
  /** Authenticated requests per minute per token; 0 (the default) does not limit them. */
  readonly perTokenPerMinute: number;
  /**
   * Who the request acts for, as the per-token bucket's key (the token's id, or the bootstrap
   * token), or null when it carries no valid token. Identified before the limiter, refused after it.
   */
  readonly principal: (req: IncomingMessage) => string | null;
}

// Redis away must cost a request nothing (fail open at once, never wait for a reconnect), and a
// store created before Redis is up must still work once it is: the scripts are kept here by
// their SHA1 (what SCRIPT LOAD answers), so loading never touches Redis and a NOSCRIPT (fresh or
// restarted Redis) falls back to EVAL.
function store(o: RateLimitOptions, name: string): RedisStore {
  const scripts = new Map<string, string>();
  return new RedisStore({
    prefix: `${o.prefix}:ratelimit:${name}:`,
    sendCommand: async (command: string, ...args: string[]) => {
      if (command.toUpperCase() === 'SCRIPT' && args[0]?.toUpperCase() === 'LOAD') {
        const sha = createHash('sha1').update(args[1]!).digest('hex');
        scripts.set(sha, args[1]!);
        return sha;
      }
      try {
        if (o.redis.status !== 'ready') throw new Error('redis not ready');
        const reply = command.toUpperCase() === 'EVALSHA' ? await evalsha(args) : ((await o.redis.call(command, ...args)) as RedisReply);
        o.health.ok();
        return reply;
      } catch (err) {
        o.health.failed(err as Error);
        throw err;
      }
    },
  });
  async function evalsha([sha, ...rest]: string[]): Promise<RedisReply> {
    try {
      return (await o.redis.call('EVALSHA', sha!, ...rest)) as RedisReply;
    } catch (err) {
      const script = scripts.get(sha!);
      if (!script || !String((err as Error).message).startsWith('NOSCRIPT')) throw err;
      return (await o.redis.call('EVAL', script, ...rest)) as RedisReply;
    }
  }
}

export function apiRateLimit(o: ApiRateLimitOptions): RequestHandler {
  const common = {
    windowMs: 60_000,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    // Redis away: serve rather than refuse (the API works without the limiter).
    passOnStoreError: true,
    logger: o.health.logger,
  } as const;
  const limiters: RequestHandler[] = [];
  if (o.perMinute > 0) {
    limiters.push(
      rateLimit({
        ...common,
        limit: o.perMinute,
        identifier: 'unauthenticated',
        store: store(o, 'api-ip'),
        skip: (req) => o.principal(req) !== null,
        keyGenerator: (req) => ipKeyGenerator(req.ip ?? 'unknown'),
        handler: (_req, _res, next) => next(new HttpError(429, 'rate_limited', `more than ${o.perMinute} unauthenticated requests a minute from this address; retry after the RateLimit reset`)),
      }),
    );
  }
  if (o.perTokenPerMinute > 0) {
    limiters.push(
      rateLimit({
        ...common,
        limit: o.perTokenPerMinute,
        identifier: 'token',
        store: store(o, 'api-token'),
        skip: (req) => o.principal(req) === null,
        keyGenerator: (req) => o.principal(req)!,
        handler: (_req, _res, next) => next(new HttpError(429, 'rate_limited', `more than ${o.perTokenPerMinute} requests a minute with this token; retry after the RateLimit reset`)),
      }),
    );
  }
  return (req, res, next) => {
    const run = (i: number): void => {
      const limiter = limiters[i];
      if (!limiter) return next();
      void limiter(req, res, (err?: unknown) => (err ? next(err) : run(i + 1)));
    };
    run(0);
  };
}

/**
 * The same limits for WebSocket upgrades, which never pass through express: the same buckets
 * (same stores, same keys), counted once per upgrade. Resolves to nothing when the upgrade may go
 * on; rejects with the 429 to answer. Redis away: not limited, as on plain HTTP.
 */
export function upgradeRateLimit(o: ApiRateLimitOptions): (req: IncomingMessage, principal: string | null) => Promise<void> {
  const init = (s: RedisStore) => {
    void s.init({ windowMs: 60_000 } as Parameters<RedisStore['init']>[0]);
    return s;
  };
  const byIp = o.perMinute > 0 ? init(store(o, 'api-ip')) : undefined;
  const byToken = o.perTokenPerMinute > 0 ? init(store(o, 'api-token')) : undefined;
  return async (req, principal) => {
    const [s, key, limit, what] = principal === null
      ? [byIp, ipKeyGenerator(clientIp(req)), o.perMinute, 'unauthenticated requests a minute from this address']
      : [byToken, principal, o.perTokenPerMinute, 'requests a minute with this token'];
    if (!s) return;
    const hits = await s.increment(key).catch(() => undefined);
    if (hits && hits.totalHits > limit) throw new HttpError(429, 'rate_limited', `more than ${limit} ${what}; retry after the RateLimit reset`);
  };
}

// What express's req.ip is with 'trust proxy' true (app.ts): the leftmost X-Forwarded-For entry.
function clientIp(req: IncomingMessage): string {
  const forwarded = req.headers['x-forwarded-for'];
  const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim();
  return first || (req.socket.remoteAddress ?? 'unknown');
}

/** Whether the sender's address is past its limit for bad signatures (asked only for a bad one). */
export type WebhookLimitCheck = () => Promise<{ retryAfterSeconds: number } | undefined>;
export type WebhookNext = (limited: WebhookLimitCheck) => void;

/**
 * Longest a webhook waits for the limiter's Redis before being served unlimited. Its scripts run
 * as EVALSHA, which Redis holds like a write while it is paused or stalled (CLIENT PAUSE WRITE, a
 * master cut off): unbounded, a webhook waited there the whole stall, before the enqueue deadline
 * had even started.
 */
const WEBHOOK_LIMIT_WAIT_MS = 200;

/**
 * Wraps the raw webhook handler: limits unsigned and badly signed requests per IP only. A signed
 * request goes to the handler at once, never waiting for Redis; only if its signature turns out
 * bad does the handler ask whether its address is past the limit (429) or not (401), so Meta
 * behind a shared address is never limited by someone else's forgeries.
 */
export function webhookRateLimit(o: RateLimitOptions): (req: IncomingMessage, res: ServerResponse, next: WebhookNext) => void {
  const unlimited: WebhookLimitCheck = () => Promise.resolve(undefined);
  if (o.perMinute === 0) return (_req, _res, next) => next(unlimited);
  const s = store(o, 'webhook');
  void s.init({ windowMs: 60_000 } as Parameters<RedisStore['init']>[0]);
  const none = { totalHits: 0, resetTime: undefined };
  const bounded = (p: Promise<{ totalHits: number; resetTime: Date | undefined }>) => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<typeof none>((resolve) => (timer = setTimeout(() => resolve(none), WEBHOOK_LIMIT_WAIT_MS)));
    return Promise.race([p.catch(() => none), late]).finally(() => clearTimeout(timer));
  };
  const hit = (ip: string) => bounded(s.increment(ip));
  const peek = (ip: string) => bounded(s.get(ip).then((r) => r ?? none));
  const retryAfter = (resetTime: Date | undefined) => (resetTime ? Math.max(1, Math.ceil((resetTime.getTime() - Date.now()) / 1000)) : 60);
  return (req, res, next) => {
    const ip = ipKeyGenerator(req.socket.remoteAddress ?? 'unknown');
    if (req.headers['x-hub-signature-256'] === undefined) {
      void hit(ip).then(({ totalHits, resetTime }) => {
        if (totalHits <= o.perMinute) return next(unlimited);
        req.resume();
        sendJson(res, 429, errorBody('rate_limited', 'too many unsigned webhook requests from this address'), { 'retry-after': String(retryAfter(resetTime)) });
      });
      return;
    }
    res.once('finish', () => {
      if (res.statusCode === 401) void hit(ip);
    });
    // The peek does not count this request, so >= here is the unsigned path's <= after its hit:
    // the same request number (perMinute + 1) is the first one limited on both.
    next(() => peek(ip).then(({ totalHits, resetTime }) => (totalHits >= o.perMinute ? { retryAfterSeconds: retryAfter(resetTime) } : undefined)));
  };
}
