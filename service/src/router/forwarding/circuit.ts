// A circuit breaker per area, shared by every worker process through Redis (one hash per
// area), so all workers agree: after `threshold` consecutive failed deliveries the area's events
// are left alone for `resetMs`; then exactly one probe may go (whichever worker takes the probe
// lease first, atomically in Lua); its success closes the circuit, its failure opens it again.
// A probe whose worker dies frees itself when its lease ends.
import type { Redis } from 'ioredis';

export type AreaCircuitState = 'closed' | 'open' | 'half_open';

export interface AreaCircuitOptions {
  readonly prefix: string;
  /** Consecutive failures that open the circuit. */
  readonly threshold: number;
  /** How long an open circuit refuses deliveries before one probe may go. */
  readonly resetMs: number;
}

export interface AreaCircuit {
  readonly state: AreaCircuitState;
  /** Failures in a row (0 when the last delivery succeeded). */
  readonly failures: number;
}

// Times are Redis's own clock (TIME), so workers on hosts whose clocks differ still agree.
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

// KEYS[1] the area's hash, KEYS[2] the set of areas with a hash; ARGV: threshold, resetMs, areaId.
// Returns 1 when this failure opened (or re-opened) the circuit.
const FAIL = `${NOW}
redis.call('SADD', KEYS[2], ARGV[3])
local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local probing = redis.call('HEXISTS', KEYS[1], 'probe') == 1
if (state == 'open' and probing) or (state == 'closed' and n >= tonumber(ARGV[1])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + tonumber(ARGV[2]))
  redis.call('HDEL', KEYS[1], 'probe')
  return 1
end
return 0
`;

// KEYS[1] the area's hash; ARGV: probe lease ms. Returns 1 to the one caller that may probe.
const PROBE = `${NOW}
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'until')) > now then return 0 end
local probe = redis.call('HGET', KEYS[1], 'probe')
if probe and tonumber(probe) > now then return 0 end
redis.call('HSET', KEYS[1], 'probe', now + tonumber(ARGV[1]))
return 1
`;

// KEYS[1] the set of areas with a hash; ARGV: the hashes' key prefix. Returns id, state, ms left open, failures, ...
const SNAPSHOT = `${NOW}
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = redis.call('HMGET', ARGV[1] .. id, 'state', 'until', 'failures')
  if h[3] then
    table.insert(out, id)
    table.insert(out, h[1] or 'closed')
    table.insert(out, tostring(tonumber(h[2] or '0') - now))
    table.insert(out, h[3])
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
`;

export class AreaCircuits {
  constructor(
    private readonly redis: Redis,
    private readonly opts: AreaCircuitOptions,
  ) {}

  private key(areaId: number): string {
    return `${this.opts.prefix}:area-circuit:${areaId}`;
  }

  private get setKey(): string {
    return `${this.opts.prefix}:area-circuits`;
  }

  /** Returns true when this failure opened the circuit (or re-opened it after a failed probe). */
  async failure(areaId: number): Promise<boolean> {
    return (await this.redis.eval(FAIL, 2, this.key(areaId), this.setKey, this.opts.threshold, this.opts.resetMs, areaId)) === 1;
  }

  async success(areaId: number): Promise<void> {
    await this.redis.multi().del(this.key(areaId)).srem(this.setKey, areaId).exec();
  }

  /** Takes the half-open probe: true for exactly one caller per reset period, whichever worker it is. */
  async tryProbe(areaId: number, leaseMs: number): Promise<boolean> {
    return (await this.redis.eval(PROBE, 1, this.key(areaId), leaseMs)) === 1;
  }

  /** Every area whose last delivery failed, with its state; an area not listed is closed. */
  async snapshot(): Promise<Map<number, AreaCircuit>> {
    const flat = (await this.redis.eval(SNAPSHOT, 1, this.setKey, `${this.opts.prefix}:area-circuit:`)) as string[];
    const out = new Map<number, AreaCircuit>();
    for (let i = 0; i < flat.length; i += 4) {
      const open = flat[i + 1] === 'open';
      out.set(Number(flat[i]), { state: !open ? 'closed' : Number(flat[i + 2]) > 0 ? 'open' : 'half_open', failures: Number(flat[i + 3]) });
    }
    return out;
  }
}
