// GET /v1/events: realtime events as Server-Sent Events, or as WebSocket messages on the same
// path. Each event is JSON `{ id, type, ... }`; `types=a,b` picks some. Events are at most once:
// a client that reconnects reloads what it shows through the API. A token limited to areas gets
// only the events of conversations assigned to its areas; a revoked token's streams end, and an
// expiring token's at its expiry.
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { Router, type RequestHandler, type Response } from 'express';
import { WebSocketServer, type WebSocket } from 'ws';
import { EVENT_TYPES, typeFilter, type EventHub, type RealtimeEvent, type TypeFilter } from '../../events/hub.js';
import { hasScope, principalOf, type Principal } from '../../tokens/principal.js';
import { HttpError } from '../errors.js';
import { z } from 'zod';
import { defineOperations } from '../../openapi/operation.js';

export const eventOperations = defineOperations('Events', [
  {
    method: 'get', path: '/v1/events', summary: 'Realtime events (Server-Sent Events, or a WebSocket on the same path)', auth: 'bearer-or-query',
    description: `Each event is JSON \`{ id, type, ... }\` of type ${EVENT_TYPES.map((t) => `\`${t}\``).join(', ')}. At most once: a client that reconnects reloads what it shows through the API.`,
    parsesJson: false,
    query: z.object({ types: z.string().optional().meta({ description: 'Comma-separated event types to receive (other names match nothing)', example: 'message.created,message.status' }) }),
    responses: { 200: { description: 'An event stream', contentType: 'text/event-stream', schema: z.string() } },
  },
]);

/** A client further behind than this is cut off (it reconnects and reloads) instead of growing memory. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
/** setTimeout's longest delay; a later expiry is left to the heartbeat's re-check. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Numbered = RealtimeEvent & { id: number };
/** The area each conversation is assigned to (absent: not assigned). */
export type AreasOf = (conversationIds: readonly number[]) => Promise<ReadonlyMap<number, number>>;

export interface StreamTokens {
  readonly areasOf: AreasOf;
  /** Which of these tokens are still live (neither revoked nor expired). */
  liveTokens(ids: readonly number[]): Promise<ReadonlySet<number>>;
}

/** Told to every web process, never to clients: streams opened with that token end. */
export const TOKEN_REVOKED = 'token.revoked';
/**
 * An event's JSON, made once however many clients it goes to (a web process's clients share the
 * event objects), instead of once per client.
 */
const serialized = new WeakMap<object, string>();
function jsonOf(e: object): string {
  let s = serialized.get(e);
  if (s === undefined) serialized.set(e, (s = JSON.stringify(e)));
  return s;
}

/**
 * What a filter keeps of a batch, picked once per batch and filter (typeFilter shares one filter
 * between the clients asking the same types), so such clients also share one SSE chunk.
 */
const picked = new WeakMap<readonly Numbered[], Map<TypeFilter, Numbered[]>>();
function pick(events: readonly Numbered[], wanted: TypeFilter): Numbered[] {
  let byFilter = picked.get(events);
  if (!byFilter) picked.set(events, (byFilter = new Map()));
  let mine = byFilter.get(wanted);
  if (!mine) byFilter.set(wanted, (mine = events.filter((e) => e.type !== TOKEN_REVOKED && wanted(e.type))));
  return mine;
}

const chunks = new WeakMap<readonly Numbered[], string>();
function sseChunk(events: readonly Numbered[]): string {
  let chunk = chunks.get(events);
  if (chunk === undefined) {
    chunk = '';
    for (const e of events) chunk += `id: ${e.id}\nevent: ${e.type}\ndata: ${jsonOf(e)}\n\n`;
    chunks.set(events, chunk);
  }
  return chunk;
}

export class RealtimeClients {
  /** Each open stream's end, with its token (null: the bootstrap token, which cannot be revoked). */
  private readonly closers = new Map<() => void, number | null>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly unhook: () => void;
  readonly wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  // One lookup per published batch, shared by every area-limited client of this process.
  private readonly batchAreas = new WeakMap<readonly Numbered[], Promise<ReadonlyMap<number, number>>>();

  /**
   * Revocations come by pub/sub, which loses what is published while the subscription is down:
   * every `heartbeatMs`, and whenever the subscription holds again, the open streams' tokens are
   * re-checked in Postgres (one query per process for all of them) and the dead ones' streams end.
   */
  constructor(
    private readonly hub: EventHub,
    private readonly tokens: StreamTokens,
    private readonly heartbeatMs: number,
    private readonly onCount?: (n: number) => void,
  ) {
    this.sweeper = setInterval(() => void this.recheck(), heartbeatMs);
    this.sweeper.unref();
    this.unhook = hub.onSubscribed(() => void this.recheck());
  }

  /** Ends the streams of tokens revoked or expired since they opened; a failed lookup ends none. */
  private async recheck(only?: number): Promise<void> {
    const ids = only === undefined ? [...new Set([...this.closers.values()].filter((id): id is number => id !== null))] : [only];
    if (ids.length === 0) return;
    const live = await this.tokens.liveTokens(ids).catch(() => null);
    if (!live) return;
    for (const [close, id] of [...this.closers]) if (id !== null && ids.includes(id) && !live.has(id)) close();
  }

  /**
   * Listens for `p`'s client: `deliver` gets the events it may see, in order; `end` runs when its
   * token is revoked. Clients of unlimited tokens stay on the synchronous path (no lookup).
   */
  private listen(p: Principal, wanted: TypeFilter, deliver: (events: readonly Numbered[]) => void, end: () => void): () => void {
    const revoked = (events: readonly Numbered[]) => p.tokenId !== null && events.some((e) => e.type === TOKEN_REVOKED && e.tokenId === p.tokenId);
    const areas = p.areaIds;
    if (!areas) {
      return this.hub.listen((events) => {
        if (revoked(events)) return end();
        deliver(pick(events, wanted));
      });
    }
    let chain = Promise.resolve();
    let stopped = false;
    const unlisten = this.hub.listen((events) => {
      if (revoked(events)) return end();
      const candidates = pick(events, wanted).filter((e) => typeof e.conversationId === 'number');
      if (candidates.length === 0) return;
      const pending = this.areasOfBatch(events);
      // Chained, so a slow lookup never lets a later batch overtake an earlier one.
      chain = chain.then(async () => {
        // A failed lookup drops the batch for these clients: events are hints, never a leak.
        const routed = await pending.catch(() => new Map<number, number>());
        const mine = candidates.filter((e) => areas.includes(routed.get(e.conversationId as number) ?? -1));
        // A lookup may finish after the client left: its stream is closed by then.
        if (mine.length && !stopped) deliver(mine);
      });
    });
    return () => {
      stopped = true;
      unlisten();
    };
  }

  /**
   * The areas of every conversation the batch speaks of, looked up once for all area-limited
   * clients whatever types each asks (a lookup of one client's types would miss the others').
   */
  private areasOfBatch(events: readonly Numbered[]): Promise<ReadonlyMap<number, number>> {
    let lookup = this.batchAreas.get(events);
    if (!lookup) {
      const ids = new Set<number>();
      for (const e of events) if (typeof e.conversationId === 'number') ids.add(e.conversationId);
      this.batchAreas.set(events, (lookup = this.tokens.areasOf([...ids])));
    }
    return lookup;
  }

  /**
   * Keeps `close` among the open streams until it runs. The token is checked once more now: one
   * revoked between its lookup and the stream's listen() was told to nobody yet listening. An
   * expiring token's stream ends at its expiry.
   */
  private track(p: Principal, close: () => void): () => void {
    this.closers.set(close, p.tokenId);
    this.onCount?.(this.closers.size);
    if (p.tokenId !== null) void this.recheck(p.tokenId);
    const left = p.expiresAt === null ? null : p.expiresAt - Date.now();
    const expiry = left !== null && left <= MAX_TIMER_MS ? setTimeout(close, Math.max(0, left)) : undefined;
    expiry?.unref();
    return () => {
      clearTimeout(expiry);
      this.closers.delete(close);
      this.onCount?.(this.closers.size);
    };
  }

  /** The SSE route, to mount under /v1 with its own auth (a header or `access_token`). */
  router(auth: RequestHandler[]): Router {
    const r = Router();
    r.get('/events', ...auth, (req, res) => this.serveSse(req, res));
    return r;
  }

  private serveSse(req: IncomingMessage & { query?: unknown }, res: Response): void {
    const principal = principalOf(req)!;
    const wanted = typeFilter(new URL(req.url ?? '/', 'http://x').searchParams.get('types'));
    res.status(200).set({ 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.flushHeaders();
    res.write('retry: 3000\n: connected\n\n');
    const end = () => {
      clearInterval(beat);
      stop();
      untrack();
      if (!res.writableEnded) res.end();
    };
    const stop = this.listen(principal, wanted, (events) => {
      const chunk = sseChunk(events);
      if (chunk === '') return;
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        // end() would queue the close behind the megabytes the client is not reading, so the
        // connection and its backlog would stay; a reset drops both now (the client reconnects).
        end();
        res.socket?.resetAndDestroy();
        return;
      }
      res.write(chunk);
    }, () => end());
    const beat = setInterval(() => res.write(': ping\n\n'), this.heartbeatMs);
    beat.unref();
    const untrack = this.track(principal, end);
    req.on('close', end);
  }

  /** Answers an upgrade on `path`; false when the request is not for it (another handler's). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, path: string, authorize: (req: IncomingMessage) => Promise<Principal | null>): boolean {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== path) return false;
    const refuse = (status: string, code: string, message: string) =>
      socket.end(`HTTP/1.1 ${status}\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n${JSON.stringify({ error: { code, message } })}`);
    authorize(req).then(
      (p) => {
        if (!p) return refuse('401 Unauthorized', 'unauthorized', 'a valid bearer token is required');
        if (!hasScope(p, 'conversations:read')) return refuse('403 Forbidden', 'forbidden', 'this token lacks the conversations:read scope');
        const wanted = typeFilter(url.searchParams.get('types'));
        this.wss.handleUpgrade(req, socket, head, (ws) => this.serveWebSocket(ws, p, wanted));
      },
      (err: unknown) =>
        err instanceof HttpError && err.status === 429
          ? refuse('429 Too Many Requests', err.code, err.message)
          : refuse('503 Service Unavailable', 'unavailable', 'the token could not be checked; retry'),
    );
    return true;
  }

  private serveWebSocket(ws: WebSocket, principal: Principal, wanted: TypeFilter): void {
    let alive = true;
    const end = () => {
      clearInterval(beat);
      stop();
      untrack();
      ws.terminate();
    };
    const stop = this.listen(principal, wanted, (events) => {
      if (ws.bufferedAmount > MAX_BUFFERED_BYTES) return end();
      for (const e of events) ws.send(jsonOf(e));
    }, () => end());
    // Pings find dead peers that never closed (a NAT that forgot them).
    const beat = setInterval(() => {
      if (!alive) return end();
      alive = false;
      ws.ping();
    }, this.heartbeatMs);
    beat.unref();
    ws.on('pong', () => (alive = true));
    ws.on('close', end);
    ws.on('error', end);
    const untrack = this.track(principal, end);
  }

  get count(): number {
    return this.closers.size;
  }

  /** Ends every stream, so a graceful stop does not wait on them. */
  closeAll(): void {
    clearInterval(this.sweeper);
    this.unhook();
    for (const close of [...this.closers.keys()]) close();
    this.wss.close();
  }
}

export function attachUpgrade(server: Server, clients: RealtimeClients, path: string, authorize: (req: IncomingMessage) => Promise<Principal | null>): void {
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!clients.handleUpgrade(req, socket, head, path, authorize)) socket.destroy();
  });
}
