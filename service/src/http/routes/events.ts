// GET /v1/events: realtime events as Server-Sent Events, or as WebSocket messages on the same
// path. Each event is JSON `{ id, type, ... }`; `types=a,b` picks some. Events are at most once:
// a client that reconnects reloads what it shows through the API. A token limited to areas gets
// only the events of conversations assigned to its areas; a revoked token's streams end, and an
// expiring token's at its expiry.
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { Router, type RequestHandler, type Response } from 'express';
import { WebSocketServer, type WebSocket } from 'ws';
import { EVENT_TYPES, typeFilter, type EventHub, type TypeFilter } from '../../events/hub.js';
import { Fanout, type AreasOf, type Delivery } from '../../events/fanout.js';
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

export type { AreasOf } from '../../events/fanout.js';

export interface StreamTokens {
  readonly areasOf: AreasOf;
  /** Which of these tokens are still live (neither revoked nor expired). */
  liveTokens(ids: readonly number[]): Promise<ReadonlySet<number>>;
}

export class RealtimeClients {
  /** Each open stream's end, with its token (null: the bootstrap token, which cannot be revoked). */
  private readonly closers = new Map<() => void, number | null>();
  /** Each open stream's heartbeat: one timer for the process, not one per stream. */
  private readonly beats = new Set<() => void>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly unhook: () => void;
  private readonly fanout: Fanout;
  readonly wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });

  /**
   * Revocations come by pub/sub, which loses what is published while the subscription is down:
   * every `heartbeatMs`, and whenever the subscription holds again, the open streams' tokens are
   * re-checked in Postgres (one query per process for all of them) and the dead ones' streams end.
   */
  constructor(
    hub: EventHub,
    private readonly tokens: StreamTokens,
    heartbeatMs: number,
  ) {
    this.fanout = new Fanout(hub, tokens.areasOf);
    this.sweeper = setInterval(() => {
      for (const beat of [...this.beats]) beat();
      void this.recheck();
    }, heartbeatMs);
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
   * Keeps the stream among the open ones until `close` runs: it gets the events `p` may see of
   * the types it asked, in order, and a heartbeat. The token is checked once more now: one
   * revoked between its lookup and the stream's start was told to nobody yet listening. An
   * expiring token's stream ends at its expiry. Returns the removal, for `close` to call.
   */
  private open(p: Principal, wanted: TypeFilter, transport: 'sse' | 'ws', deliver: (d: Delivery) => void, beat: () => void, close: () => void): () => void {
    const unlisten = this.fanout.add({ tokenId: p.tokenId, deliver, revoked: close }, { wanted, areaIds: p.areaIds, transport });
    this.closers.set(close, p.tokenId);
    this.beats.add(beat);
    if (p.tokenId !== null) void this.recheck(p.tokenId);
    const left = p.expiresAt === null ? null : p.expiresAt - Date.now();
    const expiry = left !== null && left <= MAX_TIMER_MS ? setTimeout(close, Math.max(0, left)) : undefined;
    expiry?.unref();
    return () => {
      unlisten();
      clearTimeout(expiry);
      this.closers.delete(close);
      this.beats.delete(beat);
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
    let open = true;
    const end = () => {
      if (!open) return;
      open = false;
      remove();
      if (!res.writableEnded) res.end();
    };
    const deliver = (d: Delivery) => {
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        // end() would queue the close behind the megabytes the client is not reading, so the
        // connection and its backlog would stay; a reset drops both now (the client reconnects).
        end();
        res.socket?.resetAndDestroy();
        return;
      }
      // The chunk is framed once for every stream of the group: written to the socket as it is,
      // past the response's own chunking (which would frame and encode it again per client). The
      // socket is the response's own once it is assigned (a pipelined request waits for it).
      const socket = res.socket;
      if (res.chunkedEncoding && socket) socket.write(d.sseChunk());
      else res.write(d.sse());
    };
    const remove = this.open(principal, wanted, 'sse', deliver, () => res.write(': ping\n\n'), end);
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
    let open = true;
    const end = () => {
      if (!open) return;
      open = false;
      remove();
      ws.terminate();
    };
    const deliver = (d: Delivery) => {
      if (ws.bufferedAmount > MAX_BUFFERED_BYTES) return end();
      for (const message of d.json()) ws.send(message, { binary: false });
    };
    // Pings find dead peers that never closed (a NAT that forgot them).
    const beat = () => {
      if (!alive) return end();
      alive = false;
      ws.ping();
    };
    const remove = this.open(principal, wanted, 'ws', deliver, beat, end);
    ws.on('pong', () => (alive = true));
    ws.on('close', end);
    ws.on('error', end);
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
