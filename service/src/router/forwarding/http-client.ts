// One keep-alive connection pool per receiver origin (undici). Unless private targets are
// allowed, every address a host resolves to is checked at connect time too, so a DNS answer
// that changes after the area was saved (rebinding) cannot reach into our network.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { Agent, request } from 'undici';
import { isPublicAddress } from '../ssrf.js';

export interface DeliveryResult {
  readonly statusCode: number | null;
  readonly latencyMs: number;
  readonly error: string | null;
  readonly response: string | null;
  readonly retryAfterSeconds: number | null;
}

const EXCERPT = 512;

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

function publicOnlyLookup(hostname: string, options: { all?: boolean }, callback: LookupCallback): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    const bad = addresses.find((a) => !isPublicAddress(a.address));
    if (bad) return callback(Object.assign(new Error(`${hostname} resolves to a private address (${bad.address})`), { code: 'EPRIVATE' }), []);
    if (options.all) return callback(null, addresses);
    callback(null, addresses[0]!.address, addresses[0]!.family);
  });
}

export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | null {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return null;
  if (/^\d+$/.test(v.trim())) return Number(v.trim());
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, Math.round((at - now) / 1000));
}

export class WebhookClient {
  private readonly agent: Agent;

  constructor(private readonly opts: { timeoutMs: number; allowPrivate: boolean; connectionsPerOrigin?: number }) {
    this.agent = new Agent({
      keepAliveTimeout: 30_000,
      connections: opts.connectionsPerOrigin ?? 64,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      connect: { timeout: Math.min(opts.timeoutMs, 10_000), ...(opts.allowPrivate ? {} : { lookup: publicOnlyLookup as never }) },
    });
  }

  async post(url: string, headers: Record<string, string>, body: string): Promise<DeliveryResult> {
    const started = performance.now();
    const latency = () => Math.round(performance.now() - started);
    try {
      const res = await request(url, { method: 'POST', headers, body, dispatcher: this.agent, signal: AbortSignal.timeout(this.opts.timeoutMs), maxRedirections: 0 } as Parameters<typeof request>[1]);
      const text = (await res.body.text()).slice(0, EXCERPT);
      return { statusCode: res.statusCode, latencyMs: latency(), error: null, response: text || null, retryAfterSeconds: parseRetryAfter(res.headers['retry-after']) };
    } catch (err) {
      const e = err as Error & { code?: string };
      const message = e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT' ? `timed out after ${this.opts.timeoutMs} ms` : `${e.code ?? e.name}: ${e.message}`;
      return { statusCode: null, latencyMs: latency(), error: message, response: null, retryAfterSeconds: null };
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
