// Every check a send needs from Redis, in one round trip: a possibly unfinished earlier
// call for this message (its worker died: wait for Meta's status webhook before sending
// again), the channel's circuit breaker (half-open lets one probe through), Meta's pair
// rate to this recipient (a token bucket) and a slot in the channel's throughput schedule
// (GCRA: messages leave evenly at the number's rate, across every worker process).
// A "go" marks the message in flight until its outcome is known.
import type { Redis } from 'ioredis';

// KEYS: circuit hash, pair hash, rate key, in-flight marker of this message.
// ARGV: now, resetMs, pairBurst, pairIntervalMs, rateIntervalMs, rateBurst, slotReserved (0/1), graceMs.
// Returns {verdict, value, failures}: 0 go (value = slot), 1 circuit wait, 2 pair wait, 3 in-flight wait.
const GATE = `
local now = tonumber(ARGV[1])
local inflight = tonumber(redis.call('GET', KEYS[4]) or '0')
if now - inflight < tonumber(ARGV[8]) then return {3, inflight + tonumber(ARGV[8]) - now, 0} end
local state = redis.call('HGET', KEYS[1], 'state')
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if state == 'open' or state == 'half_open' then
  local until_ = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
  if now < until_ then return {1, until_ - now, failures} end
  if redis.call('HSETNX', KEYS[1], 'probe', now) == 0 then
    local probe = tonumber(redis.call('HGET', KEYS[1], 'probe'))
    if now - probe <= tonumber(ARGV[2]) then return {1, 1000, failures} end
    redis.call('HSET', KEYS[1], 'probe', now)
  end
  redis.call('HSET', KEYS[1], 'state', 'half_open')
end
if ARGV[7] == '1' then
  redis.call('SET', KEYS[4], now, 'PX', tonumber(ARGV[8]) + 60000)
  return {0, now, failures}
end
local burst = tonumber(ARGV[3])
local interval = tonumber(ARGV[4])
local h = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
local tokens = tonumber(h[1]) or burst
local ts = tonumber(h[2]) or now
tokens = math.min(burst, tokens + (now - ts) / interval)
if tokens < 1 then
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts', now)
  redis.call('PEXPIRE', KEYS[2], math.ceil(burst * interval) + 1000)
  return {2, math.ceil((1 - tokens) * interval), failures}
end
redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'ts', now)
redis.call('PEXPIRE', KEYS[2], math.ceil(burst * interval) + 1000)
local t = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[3]) or '0')
local floor = now - (tonumber(ARGV[6]) - 1) * t
if tat < floor then tat = floor end
local slot = tat
if slot < now then slot = now end
redis.call('SET', KEYS[3], tostring(tat + t), 'PX', math.ceil(tat + t - now) + 60000)
if slot <= now + 2 then redis.call('SET', KEYS[4], now, 'PX', tonumber(ARGV[8]) + 60000) end
return {0, math.ceil(slot), failures}
`;

export type GateVerdict =
  | { readonly go: true; readonly slot: number; readonly failures: number }
  | { readonly go: false; readonly reason: 'circuit' | 'pair' | 'in_flight'; readonly waitMs: number };

export interface SendGateOptions {
  readonly prefix: string;
  readonly circuitResetMs: number;
  readonly pairBurst: number;
  readonly pairIntervalMs: number;
  /** Messages a channel may send at once before the even schedule applies. @defaultValue 8 */
  readonly rateBurst?: number;
  /** How long an unfinished call blocks a new one for the same message. */
  readonly inFlightGraceMs: number;
}

export class SendGate {
  constructor(
    private readonly redis: Redis,
    private readonly opts: SendGateOptions,
  ) {}

  /**
   * `slotReserved`: the job was delayed to a slot this gate gave it (pair token and rate
   * slot already taken); only the circuit is checked again.
   */
  async check(messageId: number, channelId: number, to: string, messagesPerSecond: number, slotReserved: boolean): Promise<GateVerdict> {
    const p = this.opts.prefix;
    const [verdict, value, failures] = (await this.redis.eval(
      GATE,
      4,
      `${p}:circuit:${channelId}`,
      `${p}:pair:${channelId}:${to}`,
      `${p}:rate:${channelId}`,
      `${p}:inflight:${messageId}`,
      Date.now(),
      this.opts.circuitResetMs,
      this.opts.pairBurst,
      this.opts.pairIntervalMs,
      1000 / messagesPerSecond,
      this.opts.rateBurst ?? 8,
      slotReserved ? '1' : '0',
      this.opts.inFlightGraceMs,
    )) as [number, number, number];
    if (verdict === 0) return { go: true, slot: value, failures };
    return { go: false, reason: verdict === 1 ? 'circuit' : verdict === 2 ? 'pair' : 'in_flight', waitMs: value };
  }

  /** The call ended with a known outcome (an error answer): the message is no longer in flight. */
  async done(messageId: number): Promise<void> {
    await this.redis.del(`${this.opts.prefix}:inflight:${messageId}`);
  }
}
