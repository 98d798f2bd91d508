// Every check a send needs from Redis, in one round trip: an earlier call for this message
// whose outcome is unknown (a timeout, a reset, a worker that died mid-call: wait for Meta's
// status webhook before sending again) or whose wamid is held unsaved, the channel's circuit
// breaker (half-open lets one probe through), Meta's pair rate to this recipient (a token
// bucket) and a slot in the channel's throughput schedule (GCRA: messages leave evenly at the
// number's rate, across every worker process). A "go" for a call made from this process
// marks the message in flight, before the call, whatever the wait for the slot.
//
// The pair bucket is Meta's, which starts and refills by when each send ARRIVES. A token
// taken here for a send that reaches Meta later (a slot wait, a slow network, a stalled
// process) costs nothing while the bucket is below full, but from a (nearly) full bucket
// Meta refills less than we counted: a pair's first send, delayed, leaves Meta's bucket
// behind ours for good, and the send that empties ours meets 131056. So each take stays
// open, under its message's id, until that message's call ends and is then counted as if
// Meta took it at that end (`settle`, folded into the call that clears the send marker): Meta
// had the send by then. Until then every check counts it as taken at that check: Meta may
// get it any moment. Several can be open at once (the next send's check can come before the
// earlier's settle; a replayed dead letter goes while a newer send is on its way), each
// settled by its own message only. One still open past the latest its call could reach Meta
// (its settle lost to a crash) is counted as taken at that latest, and dropped.
import type { Redis } from 'ioredis';

// The pair hash: `tokens` at `ts`, and per open take `open:<messageId>` = the latest its call
// can reach Meta (its slot, the call's timeout and a minute for a media upload before it).
// Takes past their latest count as taken all at the last of those latests: Meta had them by then.
// An older version kept one open take as `open` = its message id, taken at `ts`: it is read
// as a take open until `ts` + the call's timeout + a minute, and rewritten as one of these
// (a later check moves `ts`, which must not move that latest).
const PAIR = `
local function pair_tokens(key, now, burst, interval, timeout)
  local h = redis.call('HGETALL', key)
  local tokens, ts, legacy, takes = burst, now, nil, {}
  for i = 1, #h, 2 do
    local f, v = h[i], h[i + 1]
    if f == 'tokens' then tokens = tonumber(v)
    elseif f == 'ts' then ts = tonumber(v)
    elseif f == 'open' then legacy = v
    else takes[f] = tonumber(v) end
  end
  if legacy then
    local f = 'open:' .. legacy
    takes[f] = math.max(takes[f] or 0, math.ceil(ts + timeout) + 60000)
    redis.call('HDEL', key, 'open')
    redis.call('HSET', key, f, takes[f])
  end
  local open, stale, ended = 0, {}, 0
  for f, v in pairs(takes) do
    if v < now then
      stale[#stale + 1] = f
      ended = math.max(ended, v)
    else open = open + 1 end
  end
  local cap = burst
  if #stale > 0 then cap = math.min(burst, burst - #stale + (now - ended) / interval) end
  return math.min(cap - open, tokens + (now - ts) / interval), stale
end
local function keep(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
`;

// KEYS: circuit hash, pair hash, rate key, send marker hash of this message (`until`: no new
// call before then; `wamid`: Meta's answer, kept until the database has it).
// ARGV: now, resetMs, pairBurst, pairIntervalMs, rateIntervalMs, rateBurst, slotReserved (0/1),
// graceMs, callTimeoutMs, inProcessWaitMs, messageId (the pair token's open take).
// Returns {verdict, value, failures}: 0 go (value = slot), 1 circuit wait, 2 pair wait,
// 3 in-flight wait, 4 held wamid (value = wamid).
const GATE = `${PAIR}
local now = tonumber(ARGV[1])
local marker = redis.call('HMGET', KEYS[4], 'until', 'wamid')
if marker[2] then return {4, marker[2], 0} end
local until_ = tonumber(marker[1] or '0')
if now < until_ then return {3, math.ceil(until_ - now), 0} end
local function mark(slot)
  local u = slot + tonumber(ARGV[9]) + tonumber(ARGV[8])
  redis.call('HSET', KEYS[4], 'until', tostring(u))
  redis.call('PEXPIRE', KEYS[4], math.ceil(u - now) + 60000)
end
local state = redis.call('HGET', KEYS[1], 'state')
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if state == 'open' or state == 'half_open' then
  local cuntil = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
  if now < cuntil then return {1, cuntil - now, failures} end
  if redis.call('HSETNX', KEYS[1], 'probe', now) == 0 then
    local probe = tonumber(redis.call('HGET', KEYS[1], 'probe'))
    if now - probe <= tonumber(ARGV[2]) then return {1, 1000, failures} end
    redis.call('HSET', KEYS[1], 'probe', now)
  end
  redis.call('HSET', KEYS[1], 'state', 'half_open')
end
if ARGV[7] == '1' then
  mark(now)
  return {0, now, failures}
end
local burst = tonumber(ARGV[3])
local interval = tonumber(ARGV[4])
local tokens, stale = pair_tokens(KEYS[2], now, burst, interval, tonumber(ARGV[9]))
if #stale > 0 then redis.call('HDEL', KEYS[2], unpack(stale)) end
-- This message's own take, still open. No call since it (a job delayed to its slot, woken
-- late): the token is still this message's, used by the one call to come. A call since it
-- (its outcome unknown, a worker that died mid-call): Meta had that call by now if ever, so
-- the take counts as taken now, and a new call takes anew.
local own = 'open:' .. ARGV[11]
local reuse = false
if redis.call('HEXISTS', KEYS[2], own) == 1 then
  if marker[1] then redis.call('HDEL', KEYS[2], own) else reuse = true end
end
if not reuse and tokens < 1 then
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts', now)
  keep(KEYS[2], math.ceil(burst * interval) + 1000)
  return {2, math.ceil((1 - tokens) * interval), failures}
end
local t = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[3]) or '0')
local floor = now - (tonumber(ARGV[6]) - 1) * t
if tat < floor then tat = floor end
local slot = tat
if slot < now then slot = now end
redis.call('SET', KEYS[3], tostring(tat + t), 'PX', math.ceil(tat + t - now) + 60000)
local latest = math.ceil(slot + tonumber(ARGV[9])) + 60000
if not reuse then tokens = tokens - 1 end
redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts', now, own, latest)
-- Kept, while open, until Meta's bucket is surely full again.
keep(KEYS[2], math.ceil(burst * interval) + latest - now)
-- A job delayed to its slot makes no call before it: an old 'until' (its time passed) goes,
-- so its wake reuses this take.
if slot <= now + tonumber(ARGV[10]) then mark(slot) elseif marker[1] then redis.call('HDEL', KEYS[4], 'until') end
return {0, math.ceil(slot), failures}
`;

// The call of a send ended (or its outcome is known another way): its marker goes, and its
// pair take, if still open, counts as taken now: Meta's bucket cannot be fuller than burst
// minus the takes open until now, whatever time the send spent on its way.
// KEYS: send marker, pair hash. ARGV: now, messageId, pairBurst, pairIntervalMs, callTimeoutMs.
const DONE = `${PAIR}
redis.call('DEL', KEYS[1])
local take = 'open:' .. ARGV[2]
if redis.call('HEXISTS', KEYS[2], take) == 0 and redis.call('HGET', KEYS[2], 'open') ~= ARGV[2] then return 0 end
local now = tonumber(ARGV[1])
local burst = tonumber(ARGV[3])
local interval = tonumber(ARGV[4])
local tokens = pair_tokens(KEYS[2], now, burst, interval, tonumber(ARGV[5]))
redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts', now)
redis.call('HDEL', KEYS[2], take)
keep(KEYS[2], math.ceil(burst * interval) + 1000)
return 1
`;

export type GateVerdict =
  | { readonly go: true; readonly slot: number; readonly failures: number }
  | { readonly go: false; readonly reason: 'circuit' | 'pair' | 'in_flight'; readonly waitMs: number }
  /** Meta accepted the message earlier but its wamid is not saved yet: save it, never send again. */
  | { readonly go: false; readonly reason: 'held'; readonly wamid: string };

export interface SendGateOptions {
  readonly prefix: string;
  readonly circuitResetMs: number;
  readonly pairBurst: number;
  readonly pairIntervalMs: number;
  /** Messages a channel may send at once before the even schedule applies. @defaultValue 8 */
  readonly rateBurst?: number;
  /** How long after its call could have ended a send of unknown outcome blocks a new call. */
  readonly unknownOutcomeGraceMs: number;
  /** The longest a Graph call lasts (the client's timeout). */
  readonly callTimeoutMs: number;
  /** Slots at most this far ahead are waited for in the worker, so they are marked in flight now. */
  readonly inProcessWaitMs: number;
}

export class SendGate {
  constructor(
    private readonly redis: Redis,
    private readonly opts: SendGateOptions,
  ) {}

  private marker(messageId: number): string {
    return `${this.opts.prefix}:send:${messageId}`;
  }

  private pair(channelId: number, to: string): string {
    return `${this.opts.prefix}:pair:${channelId}:${to}`;
  }

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
      this.pair(channelId, to),
      `${p}:rate:${channelId}`,
      this.marker(messageId),
      Date.now(),
      this.opts.circuitResetMs,
      this.opts.pairBurst,
      this.opts.pairIntervalMs,
      1000 / messagesPerSecond,
      this.opts.rateBurst ?? 8,
      slotReserved ? '1' : '0',
      this.opts.unknownOutcomeGraceMs,
      this.opts.callTimeoutMs,
      this.opts.inProcessWaitMs,
      messageId,
    )) as [number, number | string, number];
    if (verdict === 0) return { go: true, slot: Number(value), failures };
    if (verdict === 4) return { go: false, reason: 'held', wamid: String(value) };
    return { go: false, reason: verdict === 1 ? 'circuit' : verdict === 2 ? 'pair' : 'in_flight', waitMs: Number(value) };
  }

  /**
   * The outcome is known and saved (or known not to have been sent): the message is no longer
   * in flight, and its pair token counts as taken now.
   */
  async done(messageId: number, channelId: number, to: string): Promise<void> {
    await this.redis.eval(DONE, 2, this.marker(messageId), this.pair(channelId, to), Date.now(), messageId, this.opts.pairBurst, this.opts.pairIntervalMs, this.opts.callTimeoutMs);
  }

  /** The call may have reached Meta: no new call for the grace, counted from now. Returns when it ends. */
  async unknownOutcome(messageId: number): Promise<number> {
    const until = Date.now() + this.opts.unknownOutcomeGraceMs;
    settled(await this.redis.multi().hset(this.marker(messageId), 'until', String(until)).pexpire(this.marker(messageId), this.opts.unknownOutcomeGraceMs + 60_000).exec());
    return until;
  }

  /** Meta answered with a wamid the database could not take yet: kept (no expiry) until it is saved. */
  async hold(messageId: number, wamid: string): Promise<void> {
    settled(await this.redis.multi().hset(this.marker(messageId), 'wamid', wamid).persist(this.marker(messageId)).exec());
  }
}

/** A MULTI answers each command's error in its result instead of rejecting. */
function settled(results: [Error | null, unknown][] | null): void {
  const err = results === null ? new Error('transaction aborted') : results.find(([e]) => e)?.[0];
  if (err) throw err;
}
