// A circuit breaker per channel, shared by every worker process through Redis: after
// `threshold` consecutive retryable failures it opens; after `resetMs` one probe may go
// (half-open, decided by SendGate); a success closes it, a failure opens it again.
// While open, messages wait.
import type { Redis } from 'ioredis';

export type CircuitState = 'closed' | 'open' | 'half_open';

export interface CircuitBreakerOptions {
  /** @defaultValue 10 */
  readonly threshold: number;
  /** @defaultValue 120000 */
  readonly resetMs: number;
  readonly prefix: string;
}

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
