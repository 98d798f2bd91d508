// Meta's throughput limit per number (80 mps by default), honoured by scheduling: every
// send reserves a slot in a per-channel schedule kept in Redis (GCRA), so the numbers's
// messages leave evenly, a small burst at most, whatever the number of worker processes.
import type { Redis } from 'ioredis';

// KEYS[1] the theoretical arrival time; ARGV: now, interval (ms per message), burst.
// Returns the slot (epoch ms) at which this message may leave.
const RESERVE = `
local now = tonumber(ARGV[1])
local t = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = now - (burst - 1) * t
if tat < floor then tat = floor end
local slot = tat
if slot < now then slot = now end
redis.call('SET', KEYS[1], tostring(tat + t), 'PX', math.ceil(tat + t - now) + 60000)
return tostring(slot)
`;

export class RatePacer {
  constructor(
    private readonly redis: Redis,
    private readonly opts: { prefix: string; burst: number },
  ) {}

  /** Reserves the next slot for a message of this channel; returns when it may leave. */
  async reserve(channelId: number, messagesPerSecond: number): Promise<number> {
    const slot = (await this.redis.eval(RESERVE, 1, `${this.opts.prefix}:rate:${channelId}`, Date.now(), 1000 / messagesPerSecond, this.opts.burst)) as string;
    return Number(slot);
  }
}
