// Realtime events for agents. Workers (and the web process, for what it writes itself) publish
// batches of events on one Redis pub/sub channel, one PUBLISH per stored batch rather than per
// message; every web process subscribes once and fans them out to its SSE and WebSocket clients.
// Delivery is at most once, as pub/sub is: a client that reconnects reloads through the API
// (conversations are ordered by latest activity, so the first page shows what it missed).
import type { Redis } from 'ioredis';
import type { Logger } from '../log.js';

/** Every event type clients receive: the /v1/events description lists these. */
export const EVENT_TYPES = ['message.created', 'message.status', 'message.media', 'conversation.updated', 'history.chunk'] as const;

export interface RealtimeEvent {
  /** `token.revoked` is told to web processes only, never to clients. */
  readonly type: (typeof EVENT_TYPES)[number] | 'token.revoked';
  readonly [key: string]: unknown;
}

export type Publish = (events: RealtimeEvent | readonly RealtimeEvent[]) => void;

export const eventsChannel = (queuePrefix: string) => `${queuePrefix}:events`;

/** Publishes on `redis`; a failure is logged and dropped (events are hints, the database is the truth). */
export function createPublisher(redis: Redis, queuePrefix: string, log: Logger, onPublished?: (n: number) => void): Publish {
  const channel = eventsChannel(queuePrefix);
  return (events) => {
    const list = Array.isArray(events) ? events : [events as RealtimeEvent];
    if (list.length === 0) return;
    redis.publish(channel, JSON.stringify(list)).then(
      () => onPublished?.(list.length),
      (err: Error) => log.debug({ err: err.message }, 'event not published'),
    );
  };
}

export type Listener = (events: readonly (RealtimeEvent & { id: number })[]) => void;

/**
 * Batches published closer together than this go out together: at most one write per client per
 * interval, so a busy channel costs the web processes (and the clients) system calls and wake-ups
 * per interval rather than per published batch. A batch after a quiet interval goes at once.
 */
export const FLUSH_INTERVAL_MS = 20;

/** One subscription per process, shared by all of its clients. */
export class EventHub {
  private readonly listeners = new Set<Listener>();
  private readonly subscribedHooks = new Set<() => void>();
  private seq = 0;
  private started = false;
  private pending: (RealtimeEvent & { id: number })[] = [];
  private lastFlush = -Infinity;

  constructor(
    private readonly subscriber: Redis,
    private readonly channel: string,
    private readonly log: Logger,
    private readonly flushIntervalMs = FLUSH_INTERVAL_MS,
  ) {}

  /** Subscribes on first use, so a process nobody listens to never holds a subscription. */
  private start(): void {
    if (this.started) return;
    this.started = true;
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel !== this.channel) return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(message);
      } catch {
        return;
      }
      const list = (Array.isArray(parsed) ? parsed : [parsed]).filter((e): e is RealtimeEvent => typeof e === 'object' && e !== null && typeof (e as RealtimeEvent).type === 'string');
      if (list.length === 0) return;
      if (this.pending.length === 0) {
        const wait = this.lastFlush + this.flushIntervalMs - performance.now();
        if (wait <= 0) setImmediate(() => this.flush());
        else setTimeout(() => this.flush(), wait);
      }
      for (const e of list) this.pending.push({ ...e, id: ++this.seq });
    });
    const subscribe = () =>
      this.subscriber.subscribe(this.channel).then(
        () => {
          for (const hook of this.subscribedHooks) hook();
        },
        (err: Error) => this.log.warn({ err: err.message }, 'events subscription failed; retried on reconnect'),
      );
    // What was published while the subscription was down is lost (a revocation too): hooks learn
    // when it holds again, after a reconnect as well, and catch up from the database.
    this.subscriber.on('ready', () => void subscribe());
    void subscribe();
  }

  private flush(): void {
    this.lastFlush = performance.now();
    const batch = this.pending;
    this.pending = [];
    for (const l of this.listeners) l(batch);
  }

  /** Runs `hook` whenever the subscription (again) holds; returns its removal. */
  onSubscribed(hook: () => void): () => void {
    this.subscribedHooks.add(hook);
    return () => this.subscribedHooks.delete(hook);
  }

  listen(listener: Listener): () => void {
    this.start();
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get clients(): number {
    return this.listeners.size;
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.subscribedHooks.clear();
    this.subscriber.disconnect();
  }
}

export type TypeFilter = (type: string) => boolean;
const everyType: TypeFilter = () => true;
const known = new Set<string>(EVENT_TYPES);
/**
 * One filter object per distinct set of asked types: clients asking the same share it (and what it
 * picked of a batch). Keyed on the known types only, as no other type is ever sent: names that are
 * not event types match nothing, so the map holds at most one filter per subset of EVENT_TYPES
 * however many distinct queries clients send.
 */
const filters = new Map<string, TypeFilter>();

/** `types=message.created,message.status` → a filter; empty means every type, unknown names none. */
export function typeFilter(types: unknown): TypeFilter {
  if (typeof types !== 'string' || types.trim() === '') return everyType;
  const key = [...new Set(types.split(',').map((t) => t.trim()).filter((t) => known.has(t)))].sort().join(',');
  let f = filters.get(key);
  if (!f) {
    const wanted = new Set(key === '' ? [] : key.split(','));
    filters.set(key, (f = (t) => wanted.has(t)));
  }
  return f;
}

/** What a stored batch tells realtime clients: new messages, moved statuses, touched conversations. */
export function storedEvents(result: {
  readonly newMessages: readonly { id: number; wamid: string; conversationId: number; channelId: number; type: string }[];
  readonly statusChanges: readonly { messageId: number; wamid: string; conversationId: number; channelId: number; status: string }[];
}): RealtimeEvent[] {
  const out: RealtimeEvent[] = [];
  const conversations = new Map<number, number>();
  for (const m of result.newMessages) {
    out.push({ type: 'message.created', messageId: m.id, wamid: m.wamid, conversationId: m.conversationId, channelId: m.channelId, direction: 'inbound', messageType: m.type });
    conversations.set(m.conversationId, m.channelId);
  }
  for (const s of result.statusChanges) {
    out.push({ type: 'message.status', messageId: s.messageId, wamid: s.wamid, conversationId: s.conversationId, channelId: s.channelId, status: s.status });
    conversations.set(s.conversationId, s.channelId);
  }
  for (const [conversationId, channelId] of conversations) out.push({ type: 'conversation.updated', conversationId, channelId });
  return out;
}
