// The routing state's hot copy in Redis, so routing a stored batch of assigned conversations
// costs one Redis read for the whole batch and no Postgres query. Postgres stays the truth:
// each entry carries its row's version (conversation_routes.version grows with every change),
// written after the change commits by whoever made it, and a write never replaces a newer
// version, so a reader filling the cache from an older read loses to the writer. A miss
// (fresh or flushed Redis, an expired entry) reads Postgres and fills the cache.
// Only "assigned" saves work (the menu needs Postgres anyway), so only it must never be stale:
// a process that could not write its change after a commit bumps a generation every entry is
// checked against, which voids them all; a fill is written only under the generation read before
// its Postgres read, so a value read before the change cannot come back after the void. The same
// read carries the menus' stamp, bumped on every menu save, so each process drops its cached menus
// at once.
import type { Redis } from 'ioredis';
import type { Logger } from '../../log.js';

/** A conversation's routing as the cache keeps it: assigned to `areaId`, or not (null). */
export interface CachedRoute {
  readonly conversationId: number;
  readonly version: number;
  readonly areaId: number | null;
}

// KEYS[1] generation; KEYS[2..] entries; ARGV[1] ttl ms, ARGV[2] the generation the values were
// read under ('' for a change just committed, which is current), then version and area per entry.
const PUT = `
local gen = redis.call('GET', KEYS[1]) or '0'
if ARGV[2] ~= '' and ARGV[2] ~= gen then return 0 end
for i = 2, #KEYS do
  local version = tonumber(ARGV[i * 2 - 1])
  local cur = redis.call('GET', KEYS[i])
  local curVersion = cur and tonumber(string.match(cur, '^(%d+)')) or -1
  if version >= curVersion then
    redis.call('SET', KEYS[i], version .. ':' .. gen .. ':' .. ARGV[i * 2], 'PX', ARGV[1])
  end
end
return 0
`;

export interface RouteCacheOptions {
  readonly prefix: string;
  /** How long an entry lives unread by a change. @defaultValue 1 hour */
  readonly ttlMs?: number;
}

export class RouteCache {
  private voiding: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly log: Logger,
    private readonly opts: RouteCacheOptions,
  ) {}

  private key(conversationId: number): string {
    return `${this.opts.prefix}:router:route:${conversationId}`;
  }

  private get genKey(): string {
    return `${this.opts.prefix}:router:route-gen`;
  }

  private get menusKey(): string {
    return `${this.opts.prefix}:router:menus-stamp`;
  }

  /**
   * One read for a batch: the conversations the cache knows (assigned or not), the menus' stamp
   * and the generation, which a fill from a Postgres read made after this one must be given.
   * Redis away: nothing known, so everything is read from Postgres.
   */
  async read(conversationIds: readonly number[]): Promise<{ routes: Map<number, number | null>; menusStamp: string | null; gen: string } | null> {
    if (this.redis.status !== 'ready') return null;
    try {
      const [gen, stamp, ...values] = await this.redis.mget(this.genKey, this.menusKey, ...conversationIds.map((id) => this.key(id)));
      const routes = new Map<number, number | null>();
      for (const [i, v] of values.entries()) {
        if (!v) continue;
        const [, entryGen, area] = v.split(':');
        if (entryGen === (gen ?? '0')) routes.set(conversationIds[i]!, area ? Number(area) : null);
      }
      return { routes, menusStamp: stamp ?? null, gen: gen ?? '0' };
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'router: route cache unreadable; reading Postgres');
      return null;
    }
  }

  private get ttlMs(): number {
    return this.opts.ttlMs ?? 3_600_000;
  }

  /** After a change committed: newer versions win. Never throws; a change it cannot write voids the cache. */
  async changed(routes: readonly CachedRoute[]): Promise<void> {
    await this.write(routes, '').catch((err: Error) => this.void(err));
  }

  /**
   * What a read of Postgres found, made after a `read` that gave `gen`. Written only while that
   * generation holds: a change committed after the Postgres read that could not reach Redis voided
   * the cache, and the value read before it must not come back. A fill that fails leaves nothing
   * stale behind.
   */
  async fill(routes: readonly CachedRoute[], gen: string): Promise<void> {
    await this.write(routes, gen).catch(() => undefined);
  }

  private async write(routes: readonly CachedRoute[], readGen: string): Promise<void> {
    if (routes.length === 0) return;
    if (this.redis.status !== 'ready') throw new Error('redis not ready');
    await this.redis.eval(PUT, routes.length + 1, this.genKey, ...routes.map((r) => this.key(r.conversationId)), this.ttlMs, readGen, ...routes.flatMap((r) => [r.version, r.areaId ?? '']));
  }

  /** After a menu was saved: every process drops its cached menus on its next read. */
  async menusChanged(): Promise<void> {
    await this.redis.incr(this.menusKey).catch((err: Error) => this.log.warn({ err: err.message }, 'router: menu change not announced; processes see it within their menu cache time'));
  }

  // A change that could not be written must not leave an older "assigned" to be trusted: void
  // every entry, retrying until Redis takes it or every entry has expired anyway.
  private void(cause: Error): void {
    if (this.voiding) return;
    this.log.warn({ err: cause.message }, 'router: route cache not updated after a change; voiding it once Redis answers');
    const until = Date.now() + this.ttlMs;
    this.voiding = (async () => {
      for (let delay = 100; Date.now() < until; delay = Math.min(delay * 2, 5_000)) {
        try {
          await this.redis.incr(this.genKey);
          return;
        } catch {
          await new Promise((r) => setTimeout(r, delay).unref());
        }
      }
    })().finally(() => {
      this.voiding = undefined;
    });
  }
}
