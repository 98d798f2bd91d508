// The webhook connection follows Sentinel's promotions itself. ioredis' own failover detector
// drops the connection on every +switch-master it hears, and each Sentinel announces the same
// promotion on its own (the leader only once the other replicas are reconfigured, up to its
// failover-timeout later): a connection that already reached the new master was dropped again,
// and every webhook in flight while it reconnected answered 503.
import { lookup } from 'node:dns/promises';
import { Redis } from 'ioredis';

export interface FollowPromotionsOptions {
  readonly sentinels: readonly { readonly host: string; readonly port: number }[];
  readonly masterName: string;
  readonly sentinelPassword?: string | undefined;
}

/** Whether `redis` is connected to `host:port` (Sentinel may announce a DNS name, the socket knows an IP). */
async function connectedTo(redis: Redis, host: string, port: number): Promise<boolean> {
  const s = redis.stream;
  if (redis.status !== 'ready' || s?.remotePort !== port || !s.remoteAddress) return false;
  const remote = s.remoteAddress.replace(/^::ffff:/, '');
  if (remote === host) return true;
  const addresses = await lookup(host, { all: true }).catch(() => []);
  return addresses.some((a) => a.address.replace(/^::ffff:/, '') === remote);
}

/**
 * Reconnects `redis` (a Sentinel-mode connection) when a Sentinel announces a master it is not
 * connected to: a master that stalls while a replica is promoted never says READONLY until
 * Sentinel converts it, seconds later. An announcement of the master it is on is ignored.
 * The subscriptions end with the connection.
 */
export function followPromotions(redis: Redis, opts: FollowPromotionsOptions): void {
  const subscribers = opts.sentinels.map(({ host, port }) => {
    const sub = new Redis({
      host, port, password: opts.sentinelPassword, connectionName: 'wa-router:promotions',
      // A Sentinel that is away is retried quietly: the others still announce the promotion.
      retryStrategy: () => 1_000, maxRetriesPerRequest: null,
    });
    sub.on('error', () => undefined);
    sub.on('message', (_channel: string, message: string) => {
      const [name, , , host, port] = message.split(' ');
      if (name !== opts.masterName || !host || !port) return;
      void connectedTo(redis, host, Number(port)).then((on) => {
        if (!on && redis.status === 'ready') redis.disconnect(true);
      });
    });
    void sub.subscribe('+switch-master').catch(() => undefined);
    return sub;
  });
  redis.once('end', () => subscribers.forEach((s) => s.disconnect()));
}
