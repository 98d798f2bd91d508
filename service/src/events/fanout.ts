// A web process's fan-out: its streams are grouped by what they may receive (the types they
// asked, the areas their token is limited to, their transport), so the work of a batch is done
// once per group, not per client: picking the batch's events, looking up areas, building the
// SSE text. Per client there is only the write. Revocations find their streams by token id.
import type { EventHub, Listener, RealtimeEvent, TypeFilter } from './hub.js';

export type Numbered = RealtimeEvent & { id: number };
/** The area each conversation is assigned to (absent: not assigned). */
export type AreasOf = (conversationIds: readonly number[]) => Promise<ReadonlyMap<number, number>>;

/** Told to every web process, never to clients: streams opened with that token end. */
export const TOKEN_REVOKED = 'token.revoked';

/**
 * What a group of streams receives of a batch, each form made at most once for all of them: the
 * bytes too, so a client costs one write of a shared buffer, no encoding of its own.
 */
export interface Delivery {
  readonly events: readonly Numbered[];
  /** The events as Server-Sent Events text. */
  sse(): string;
  /** The same text framed as one HTTP/1.1 chunk (size line, bytes, CRLF), for chunked responses. */
  sseChunk(): Buffer;
  /** Each event's JSON as UTF-8 (a WebSocket text message each). */
  json(): readonly Buffer[];
}

export interface Stream {
  /** The stream's token; null for the bootstrap token, which cannot be revoked. */
  readonly tokenId: number | null;
  readonly deliver: (d: Delivery) => void;
  /** Its token was revoked. */
  readonly revoked: () => void;
}

export interface StreamFilter {
  readonly wanted: TypeFilter;
  /** The areas of an area-limited token, null for every area. */
  readonly areaIds: readonly number[] | null;
  /** Streams of a kind share a group only with their own kind. */
  readonly transport: 'sse' | 'ws';
}

interface Group {
  readonly wanted: TypeFilter;
  readonly areaIds: readonly number[] | null;
  readonly streams: Set<Stream>;
  /** Area lookups are awaited in order, so a slow one never lets a later batch overtake. */
  chain: Promise<void>;
}

/** An event's JSON, made once however many groups it goes to (they share the event objects). */
const serialized = new WeakMap<object, string>();
function jsonOf(e: object): string {
  let s = serialized.get(e);
  if (s === undefined) serialized.set(e, (s = JSON.stringify(e)));
  return s;
}

const CRLF = Buffer.from('\r\n');

function delivery(events: readonly Numbered[]): Delivery {
  let sse: string | undefined;
  let chunk: Buffer | undefined;
  let json: Buffer[] | undefined;
  const text = () => (sse ??= events.map((e) => `id: ${e.id}\nevent: ${e.type}\ndata: ${jsonOf(e)}\n\n`).join(''));
  return {
    events,
    sse: text,
    sseChunk: () => {
      if (chunk) return chunk;
      const body = Buffer.from(text());
      return (chunk = Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, CRLF]));
    },
    json: () => (json ??= events.map((e) => Buffer.from(jsonOf(e)))),
  };
}

export class Fanout {
  private readonly groups = new Map<string, Group>();
  /** Per filter object, a small number for group keys (filters are shared per set of types). */
  private readonly filterIds = new Map<TypeFilter, number>();
  private readonly byToken = new Map<number, Set<Stream>>();
  private unlisten: (() => void) | null = null;

  constructor(
    private readonly hub: EventHub,
    private readonly areasOf: AreasOf,
  ) {}

  /** Adds a stream; returns its removal. */
  add(stream: Stream, filter: StreamFilter): () => void {
    let fid = this.filterIds.get(filter.wanted);
    if (fid === undefined) this.filterIds.set(filter.wanted, (fid = this.filterIds.size));
    const key = `${filter.transport}|${fid}|${filter.areaIds ? [...new Set(filter.areaIds)].sort((a, b) => a - b).join(',') : '*'}`;
    let group = this.groups.get(key);
    if (!group) this.groups.set(key, (group = { wanted: filter.wanted, areaIds: filter.areaIds, streams: new Set(), chain: Promise.resolve() }));
    group.streams.add(stream);
    if (stream.tokenId !== null) {
      let mine = this.byToken.get(stream.tokenId);
      if (!mine) this.byToken.set(stream.tokenId, (mine = new Set()));
      mine.add(stream);
    }
    this.unlisten ??= this.hub.listen(this.onBatch);
    const g = group;
    return () => {
      g.streams.delete(stream);
      if (g.streams.size === 0 && this.groups.get(key) === g) this.groups.delete(key);
      if (stream.tokenId !== null) {
        const mine = this.byToken.get(stream.tokenId);
        mine?.delete(stream);
        if (mine?.size === 0) this.byToken.delete(stream.tokenId);
      }
      if (this.groups.size === 0) {
        this.unlisten?.();
        this.unlisten = null;
      }
    };
  }

  private readonly onBatch: Listener = (events) => {
    for (const e of events) {
      if (e.type !== TOKEN_REVOKED || typeof e.tokenId !== 'number') continue;
      for (const s of [...(this.byToken.get(e.tokenId) ?? [])]) s.revoked();
    }
    // One pick (and its texts) per filter, one area lookup per batch, whatever the number of groups sharing them.
    const picked = new Map<TypeFilter, Numbered[]>();
    const whole = new Map<TypeFilter, Delivery>();
    let areas: Promise<ReadonlyMap<number, number>> | undefined;
    for (const g of this.groups.values()) {
      let mine = picked.get(g.wanted);
      if (!mine) picked.set(g.wanted, (mine = events.filter((e) => e.type !== TOKEN_REVOKED && g.wanted(e.type))));
      if (mine.length === 0) continue;
      const areaIds = g.areaIds;
      if (!areaIds) {
        let d = whole.get(g.wanted);
        if (!d) whole.set(g.wanted, (d = delivery(mine)));
        send(g, d);
        continue;
      }
      const candidates = mine.filter((e) => typeof e.conversationId === 'number');
      if (candidates.length === 0) continue;
      // The areas of every conversation the batch speaks of, whatever types each group asks (a
      // lookup of one group's types would miss the others').
      areas ??= this.areasOf([...new Set(events.flatMap((e) => (typeof e.conversationId === 'number' ? [e.conversationId] : [])))]);
      const lookup = areas;
      g.chain = g.chain.then(async () => {
        // A failed lookup drops the batch for these streams: events are hints, never a leak.
        const routed = await lookup.catch(() => new Map<number, number>());
        const allowed = candidates.filter((e) => areaIds.includes(routed.get(e.conversationId as number) ?? -1));
        if (allowed.length) send(g, delivery(allowed));
      });
    }
  };
}

function send(g: Group, d: Delivery): void {
  for (const s of g.streams) s.deliver(d);
}
