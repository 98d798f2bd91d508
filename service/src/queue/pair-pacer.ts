// Meta's pair rate (one business number → one customer: a burst, then one message per
// interval), honoured by scheduling instead of by collecting 131056 errors. A token
// bucket per pair in Redis, shared by every worker process.
import type { Redis } from 'ioredis';

// KEYS[1]; ARGV: now, burst, intervalMs. Takes a token if there is one; returns the wait in ms otherwise.
const TAKE = `
local now = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(h[1]) or burst
local ts = tonumber(h[2]) or now
tokens = math.min(burst, tokens + (now - ts) / interval)
if tokens >= 1 then
  redis.call('HSET', KEYS[1], 'tokens', tokens - 1, 'ts', now)
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst * interval) + 1000)
  return 0
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * interval) + 1000)
return math.ceil((1 - tokens) * interval)
`;

export class PairPacer {
  constructor(
    private readonly redis: Redis,
    private readonly opts: { prefix: string; burst: number; intervalMs: number },
  ) {}

  /** 0 when a message to this recipient may leave now, else the milliseconds to wait. */
  async take(channelId: number, to: string): Promise<number> {
    return (await this.redis.eval(TAKE, 1, `${this.opts.prefix}:pair:${channelId}:${to}`, Date.now(), this.opts.burst, this.opts.intervalMs)) as number;
  }
}
