// At most `limit` automated messages per conversation per window (every bot message counts):
// a bot answering another bot, or a customer flooding, gets a few replies and then quiet until
// the window passes. Counted in Redis, so every worker process shares the budget.
import type { Redis } from 'ioredis';

// KEYS[1] counter; ARGV: window ms. The window starts at the first message.
const TAKE = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
`;

export class LoopGuard {
  constructor(private readonly redis: Redis, private readonly opts: { prefix: string; limit: number; windowMs: number }) {}

  /** True when one more automated message may go to this conversation now. */
  async take(conversationId: number): Promise<boolean> {
    const n = Number(await this.redis.eval(TAKE, 1, `${this.opts.prefix}:router:loop:${conversationId}`, this.opts.windowMs));
    return n <= this.opts.limit;
  }
}
