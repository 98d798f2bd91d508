// A circuit breaker per channel, shared by every worker process through Redis: after
// `threshold` consecutive retryable failures it opens; after `resetMs` one probe may go
// (half-open); a success closes it, a failure opens it again. While open, messages wait.
import type { Redis } from 'ioredis';

export type CircuitState = 'closed' | 'open' | 'half_open';

export interface CircuitBreakerOptions {
  /** @defaultValue 10 */
  readonly threshold: number;
  /** @defaultValue 120000 */
  readonly resetMs: number;
  readonly prefix: string;
}

// KEYS[1] hash; ARGV: now, resetMs. Returns {allowed (0/1), waitMs}.
const ALLOW = `
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' then return {1, 0} end
local now = tonumber(ARGV[1])
local until_ = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if now < until_ then return {0, until_ - now} end
-- Half-open: exactly one probe at a time.
if redis.call('HSETNX', KEYS[1], 'probe', now) == 1 then
  redis.call('HSET', KEYS[1], 'state', 'half_open')
  return {1, 0}
end
local probe = tonumber(redis.call('HGET', KEYS[1], 'probe'))
if now - probe > tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'probe', now)
  return {1, 0}
end
return {0, 1000}
`;

// KEYS[1] hash; ARGV: now, threshold, resetMs. Returns 1 when this failure opened the circuit.
const FAIL = `
local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'half_open' or (state == 'closed' and n >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', tonumber(ARGV[1]) + tonumber(ARGV[3]))
  redis.call('HDEL', KEYS[1], 'probe')
  return 1
end
return 0
`;

export class CircuitBreaker {
  constructor(
    private readonly redis: Redis,
    private readonly opts: CircuitBreakerOptions,
  ) {}

  private key(channelId: number): string {
    return `${this.opts.prefix}:circuit:${channelId}`;
  }

  /** Whether a send may go now; if not, how long to wait. */
  async allow(channelId: number): Promise<{ allowed: boolean; waitMs: number }> {
    const [allowed, waitMs] = (await this.redis.eval(ALLOW, 1, this.key(channelId), Date.now(), this.opts.resetMs)) as [number, number];
    return { allowed: allowed === 1, waitMs };
  }

  /** Returns true when this failure opened the circuit. */
  async failure(channelId: number): Promise<boolean> {
    return (await this.redis.eval(FAIL, 1, this.key(channelId), Date.now(), this.opts.threshold, this.opts.resetMs)) === 1;
  }

  async success(channelId: number): Promise<void> {
    await this.redis.del(this.key(channelId));
  }

  async state(channelId: number): Promise<{ state: CircuitState; failures: number; openUntil: number | null }> {
    const h = await this.redis.hgetall(this.key(channelId));
    const state = (h.state as CircuitState | undefined) ?? 'closed';
    return { state, failures: Number(h.failures ?? 0), openUntil: state === 'open' ? Number(h.until) : null };
  }
}
