// Wake-ups for the forwarding workers through Redis pub/sub: whoever queues events (a stored
// batch in any worker, an assignment or a replay through the API) says so, and every worker
// claims after the settle time instead of waiting for its poll. A lost message costs one poll.
import type { Redis } from 'ioredis';
import type { Logger } from '../../log.js';

export class ForwardWake {
  private publishing = false;
  private again = false;

  constructor(
    private readonly redis: Redis,
    private readonly channel: string,
  ) {}

  static channelFor(prefix: string): string {
    return `${prefix}:router:forward-wake`;
  }

  /** Fire and forget; the calls made while one is on its way share one more after it. */
  publish(): void {
    if (this.publishing) {
      this.again = true;
      return;
    }
    if (this.redis.status !== 'ready') return;
    this.publishing = true;
    void this.redis.publish(this.channel, '1').catch(() => undefined).finally(() => {
      this.publishing = false;
      if (this.again) {
        this.again = false;
        this.publish();
      }
    });
  }

  /** Calls `onWake` for every wake-up published by any process; returns the closer. */
  static subscribe(redis: Redis, channel: string, log: Logger, onWake: () => void): () => Promise<void> {
    const sub = redis.duplicate({ lazyConnect: true, connectionName: 'wa-router:forward-wake' });
    sub.on('error', (err: Error) => log.warn({ err: err.message }, 'forwarding: wake-up subscriber error'));
    sub.on('message', () => onWake());
    // ioredis subscribes again by itself after a reconnect, but only to channels it once
    // subscribed: a first subscribe that failed (Redis away at boot, its retries spent) is
    // retried here until it holds, polling meanwhile.
    let closed = false;
    let retry: NodeJS.Timeout | undefined;
    const subscribe = (delayMs: number): void => {
      sub.subscribe(channel).then(
        () => undefined,
        (err: Error) => {
          if (closed) return;
          log.warn({ err: err.message, retryInMs: delayMs }, 'forwarding: wake-ups not subscribed; polling only until a retry holds');
          retry = setTimeout(() => subscribe(Math.min(delayMs * 2, 30_000)), delayMs).unref();
        },
      );
    };
    subscribe(1_000);
    // A subscriber has nothing to flush: closing at once never waits for an absent Redis.
    return async () => {
      closed = true;
      clearTimeout(retry);
      sub.disconnect();
    };
  }
}
