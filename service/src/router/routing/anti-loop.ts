// At most `limit` automated messages per conversation in any window of `windowMs` (every bot
// message counts): a bot answering another bot, or a customer flooding, gets a few replies and
// then quiet until the oldest one leaves the window. A sliding window (the send times in a sorted
// set, Redis's clock) so no burst straddling a window boundary gets twice the limit. Counted in
// Redis, so every worker process shares the budget.
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

// KEYS[1] sorted set of send times; ARGV: window ms, limit, a unique member. 1 when one more may go.
const TAKE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 1
`;

export class LoopGuard {
  constructor(private readonly redis: Redis, private readonly opts: { prefix: string; limit: number; windowMs: number }) {}

  /** True when one more automated message may go to this conversation now. */
  async take(conversationId: number): Promise<boolean> {
    const r = await this.redis.eval(TAKE, 1, `${this.opts.prefix}:router:loop:${conversationId}`, this.opts.windowMs, this.opts.limit, randomUUID());
    return Number(r) === 1;
  }
}
