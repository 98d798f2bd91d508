// GET /v1/events: realtime events as Server-Sent Events, or as WebSocket messages on the same
// path. Each event is JSON `{ id, type, ... }`; `types=a,b` picks some. Events are at most once:
// a client that reconnects reloads what it shows through the API.
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { Router, type RequestHandler, type Response } from 'express';
import { WebSocketServer, type WebSocket } from 'ws';
import { typeFilter, type EventHub } from '../../events/hub.js';

/** A client further behind than this is cut off (it reconnects and reloads) instead of growing memory. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
const HEARTBEAT_MS = 15_000;

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

export class RealtimeClients {
  private readonly closers = new Set<() => void>();
  readonly wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });

  constructor(
    private readonly hub: EventHub,
    private readonly onCount?: (n: number) => void,
  ) {}

  private track(close: () => void): () => void {
    this.closers.add(close);
    this.onCount?.(this.closers.size);
    return () => {
      this.closers.delete(close);
      this.onCount?.(this.closers.size);
    };
  }

  /** The SSE route, to mount under /v1 with its own auth (a header or `access_token`). */
  router(auth: RequestHandler): Router {
    const r = Router();
    r.get('/events', auth, (req, res) => this.serveSse(req, res));
    return r;
  }

  private serveSse(req: IncomingMessage & { query?: unknown }, res: Response): void {
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
    const stop = this.hub.listen((events) => {
      let chunk = '';
      for (const e of events) if (wanted(e.type)) chunk += `id: ${e.id}\nevent: ${e.type}\ndata: ${jsonOf(e)}\n\n`;
      if (chunk === '') return;
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        // end() would queue the close behind the megabytes the client is not reading, so the
        // connection and its backlog would stay; a reset drops both now (the client reconnects).
        end();
        res.socket?.resetAndDestroy();
        return;
      }
      res.write(chunk);
    });
    const beat = setInterval(() => res.write(': ping\n\n'), HEARTBEAT_MS);
    beat.unref();
    const untrack = this.track(end);
    req.on('close', end);
  }

  /** Answers an upgrade on `path`; false when the request is not for it (another handler's). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, path: string, authorized: (req: IncomingMessage) => boolean): boolean {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== path) return false;
    if (!authorized(req)) {
      socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"error":{"code":"unauthorized","message":"a valid bearer token is required"}}');
      return true;
    }
    const wanted = typeFilter(url.searchParams.get('types'));
    this.wss.handleUpgrade(req, socket, head, (ws) => this.serveWebSocket(ws, wanted));
    return true;
  }

  private serveWebSocket(ws: WebSocket, wanted: (type: string) => boolean): void {
    let alive = true;
    const end = () => {
      clearInterval(beat);
      stop();
      untrack();
      ws.terminate();
    };
    const stop = this.hub.listen((events) => {
      if (ws.bufferedAmount > MAX_BUFFERED_BYTES) return end();
      for (const e of events) if (wanted(e.type)) ws.send(jsonOf(e));
    });
    // Pings find dead peers that never closed (a NAT that forgot them).
    const beat = setInterval(() => {
      if (!alive) return end();
      alive = false;
      ws.ping();
    }, HEARTBEAT_MS);
    beat.unref();
    ws.on('pong', () => (alive = true));
    ws.on('close', end);
    ws.on('error', end);
    const untrack = this.track(end);
  }

  get count(): number {
    return this.closers.size;
  }

  /** Ends every stream, so a graceful stop does not wait on them. */
  closeAll(): void {
    for (const close of [...this.closers]) close();
    this.wss.close();
  }
}

export function attachUpgrade(server: Server, clients: RealtimeClients, path: string, authorized: (req: IncomingMessage) => boolean): void {
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!clients.handleUpgrade(req, socket, head, path, authorized)) socket.destroy();
  });
}
