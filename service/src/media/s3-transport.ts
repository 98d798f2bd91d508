// The S3 client's HTTP transport: undici (the HTTP client the rest of the service uses) in place
// of the SDK's default node:http handler. The SDK still builds, signs and parses every request;
// this only sends it. Per object stored it costs less CPU than node:http with its per-request
// timers, and a streamed body that fails (a size or SHA-256 check, the source gone) ends its
// request at once with that error instead of leaving it waiting for bytes that never come.
import type { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';

/** What the SDK hands a request handler (its HttpRequest). */
interface SdkRequest {
  readonly method: string;
  readonly protocol: string;
  readonly hostname: string;
  readonly port?: number;
  readonly path: string;
  readonly query?: Record<string, string | readonly string[] | null>;
  readonly headers: Record<string, string>;
  readonly body?: unknown;
}

const queryString = (query: SdkRequest['query']): string => {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value === null) parts.push(encodeURIComponent(key));
    else for (const v of typeof value === 'string' ? [value] : value) parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(v)}`);
  }
  return parts.length > 0 ? `?${parts.join('&')}` : '';
};

// undici names its failures its own way (UND_ERR_*); the SDK retries (maxAttempts) only what it
// knows as transient: a timeout's name TimeoutError, a dropped connection's code ECONNRESET, as
// node:http reported them. Without this a pooled socket the store closed fails the request at once.
const AS_TIMEOUT = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);
function inSdkTerms(err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return err;
  if (AS_TIMEOUT.has(code)) return Object.assign(new Error((err as Error).message, { cause: err }), { name: 'TimeoutError' });
  if (code === 'UND_ERR_SOCKET') return Object.assign(new Error((err as Error).message, { cause: err }), { code: 'ECONNRESET' });
  return err;
}

export interface UndiciHandlerOptions {
  /**
   * Connections kept per store host.
   * @defaultValue 64 (more than the downloads a worker runs at once)
   */
  readonly connections?: number;
  /** Time without response headers, or between body chunks, after which a request fails. */
  readonly timeoutMs: number;
}

export class UndiciHttpHandler {
  readonly metadata = { handlerProtocol: 'http/1.1' };
  private readonly agent: Agent;

  constructor(private readonly opts: UndiciHandlerOptions) {
    this.agent = new Agent({ connections: opts.connections ?? 64 });
  }

  async handle(req: SdkRequest, options: { abortSignal?: object } = {}): Promise<{ response: { statusCode: number; reason?: string; headers: Record<string, string>; body: Readable } }> {
    const host = req.hostname.includes(':') && !req.hostname.startsWith('[') ? `[${req.hostname}]` : req.hostname;
    const res = await request(`${req.protocol}//${host}${req.port ? `:${req.port}` : ''}${req.path}${queryString(req.query)}`, {
      dispatcher: this.agent,
      method: req.method as Dispatcher.HttpMethod,
      headers: req.headers,
      body: req.body as Dispatcher.DispatchOptions['body'],
      headersTimeout: this.opts.timeoutMs,
      bodyTimeout: this.opts.timeoutMs,
      // A standard AbortSignal when a caller gives one (none does today: it would turn off cacheMiddleware).
      ...(options.abortSignal instanceof AbortSignal ? { signal: options.abortSignal } : {}),
    }).catch((err: unknown) => {
      throw inSdkTerms(err);
    });
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(res.headers)) if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    return { response: { statusCode: res.statusCode, headers, body: res.body } };
  }

  updateHttpClientConfig(): void {}

  httpHandlerConfigs(): Record<string, never> {
    return {};
  }

  destroy(): void {
    void this.agent.close();
  }
}
