// A Graph API simulator that behaves like Meta's documented Cloud API, for tests, `make up`
// and benchmarks: POST /{version}/{phone-number-id}/messages answers wamids or Meta's error
// bodies (throughput 130429, pair rate 131056, token 190, configured failures), with latency
// and outages; it then sends the signed status webhooks (sent, delivered, read or failed),
// sometimes duplicated or out of order, each carrying the send's biz_opaque_callback_data as
// Meta's do. It can accept a send and then lose the answer (a timeout or a reset after the
// request was written) and counts accepted sends per callback data, so a test can prove a
// message reached "Meta" once. Media (metadata, expiring download URLs, uploads): see media.ts.
// Standalone, GET /_sim/accepted reports those counts and POST /_sim/config changes the config.
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { TokenBucket } from './limits.js';
import { DEFAULT_MEDIA_CONFIG, SimMedia, type SimMediaConfig } from './media.js';

export interface SimulatorConfig extends SimMediaConfig {
  /** Base latency of every Graph call, ms, plus uniform jitter. @default 5 / 5 */
  latencyMs: number;
  jitterMs: number;
  /** Per phone number. @default 80 */
  messagesPerSecond: number;
  /** Pair rate: messages to one recipient; a burst, then one per pairIntervalMs. @default 45 / 6000 */
  pairBurst: number;
  pairIntervalMs: number;
  /** Probability of a 500 with code 131000 (something went wrong). @default 0 */
  serverErrorRate: number;
  /** While true, every send answers 503 with code 2 (service unavailable). */
  outage: boolean;
  /** Recipient (number or BSUID) → error code forced for sends to it (e.g. 131026 undeliverable, 131047 window closed, 131062 not for a BSUID). */
  forcedErrors: Record<string, number>;
  /** Where status webhooks go; none are sent when empty. */
  webhookUrl: string;
  appSecret: string;
  /** Delay before the sent status, and between statuses, ms. @default 20 */
  statusDelayMs: number;
  /** Probability a status webhook is delivered twice / statuses come in reverse order. @default 0 */
  duplicateRate: number;
  reorderRate: number;
  /** Deliver and read statuses after sent. @default true */
  deliverAndRead: boolean;
  /** Statuses carry the send's biz_opaque_callback_data (Meta includes it when the send had one). @default true */
  statusCallbackData: boolean;
  /** Hold the answer of an accepted send this long (its webhooks still go): a client that dies meanwhile never learns the wamid. @default 0 */
  responseDelayMs: number;
  /** Probability that an accepted send (its webhooks still go) gets no answer: `hang` until the client gives up, or `reset` the connection. @default 0 / 'hang' */
  dropResponseRate: number;
  dropMode: 'hang' | 'reset';
  /** Recipient → the next `times` sends to it fail with `code` (then it is accepted again). */
  failFirst: Record<string, { code: number; times: number }>;
  /**
   * Recipient → extra delay (ms) of its next sends on the way in, one entry per send, spent
   * before Meta's limits see the send: a slow network or a stalled sender, so Meta's clock for
   * the pair starts (or moves) later than the sender's.
   */
  transitDelays: Record<string, number[]>;
}

export const DEFAULT_CONFIG: SimulatorConfig = {
  ...DEFAULT_MEDIA_CONFIG,
  latencyMs: 5,
  jitterMs: 5,
  messagesPerSecond: 80,
  pairBurst: 45,
  pairIntervalMs: 6_000,
  serverErrorRate: 0,
  outage: false,
  forcedErrors: {},
  webhookUrl: '',
  appSecret: '',
  statusDelayMs: 20,
  duplicateRate: 0,
  reorderRate: 0,
  deliverAndRead: true,
  statusCallbackData: true,
  responseDelayMs: 0,
  dropResponseRate: 0,
  dropMode: 'hang',
  failFirst: {},
  transitDelays: {},
};

/** Meta's title and HTTP status for the codes the simulator produces. */
const ERRORS: Record<number, { status: number; type: string; message: string }> = {
  2: { status: 503, type: 'OAuthException', message: 'Service temporarily unavailable' },
  4: { status: 400, type: 'OAuthException', message: 'Application request limit reached' },
  100: { status: 400, type: 'OAuthException', message: 'Invalid parameter' },
  190: { status: 401, type: 'OAuthException', message: 'Error validating access token: Session has expired' },
  368: { status: 400, type: 'OAuthException', message: 'Temporarily blocked for policies violations' },
  130429: { status: 400, type: 'OAuthException', message: 'Rate limit hit' },
  131000: { status: 500, type: 'OAuthException', message: 'Something went wrong' },
  131026: { status: 400, type: 'OAuthException', message: 'Message undeliverable' },
  131031: { status: 400, type: 'OAuthException', message: 'Business Account locked' },
  131047: { status: 400, type: 'OAuthException', message: 'Re-engagement message' },
  131048: { status: 400, type: 'OAuthException', message: 'Spam rate limit hit' },
  131049: { status: 400, type: 'OAuthException', message: 'This message was not delivered to maintain healthy ecosystem engagement.' },
  131056: { status: 400, type: 'OAuthException', message: '(Business Account, Consumer Account) pair rate limit hit' },
  131062: { status: 400, type: 'OAuthException', message: 'Business-scoped User ID recipients are not supported for this message' },
  132001: { status: 400, type: 'OAuthException', message: 'Template name does not exist in the translation' },
};

export interface SimulatorStats {
  requests: number;
  accepted: number;
  errors: Record<string, number>;
  webhooksSent: number;
  /** Accepted sends whose answer was dropped. */
  dropped: number;
}

export interface SentMessage {
  readonly wamid: string;
  readonly phoneNumberId: string;
  /** The phone number, or the business-scoped user id when sent by `recipient`. */
  readonly to: string;
  readonly byUserId: boolean;
  readonly body: Record<string, unknown>;
  /** When the send was accepted (before any response delay). */
  readonly at: number;
  /** When its answer was written, the same moment a client's round trip ends (minus the wire back). */
  answeredAt?: number;
}

export interface GraphSimulator {
  readonly url: string;
  readonly config: SimulatorConfig;
  readonly stats: SimulatorStats;
  /** Every accepted send, in order. */
  readonly sent: SentMessage[];
  /** Accepted sends per biz_opaque_callback_data (the router puts its message id there). */
  acceptedByCallback(): Map<string, number>;
  /** Read receipts received (`status: "read"` with `message_id`), in order. */
  readonly reads: { phoneNumberId: string; wamid: string; at: number }[];
  /** phone_number_id → the token it accepts. */
  readonly tokens: Map<string, string>;
  /** Media: add what customers send, see what was uploaded and how many bytes were served. */
  readonly media: SimMedia;
  configure(patch: Partial<SimulatorConfig>): void;
  close(): Promise<void>;
}

const wamid = () => 'wamid.' + randomBytes(24).toString('base64');

function errorBody(code: number, details?: string) {
  const e = ERRORS[code] ?? { status: 400, type: 'OAuthException', message: `Error ${code}` };
  return {
    status: e.status,
    body: { error: { message: `(#${code}) ${e.message}`, type: e.type, code, error_data: { messaging_product: 'whatsapp', details: details ?? e.message }, fbtrace_id: randomBytes(8).toString('base64url') } },
  };
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

export async function startGraphSimulator(opts: { port?: number; host?: string; config?: Partial<SimulatorConfig>; tokens?: Record<string, string> } = {}): Promise<GraphSimulator> {
  const config: SimulatorConfig = { ...DEFAULT_CONFIG, ...opts.config };
  const tokens = new Map(Object.entries(opts.tokens ?? {}));
  const stats: SimulatorStats = { requests: 0, accepted: 0, errors: {}, webhooksSent: 0, dropped: 0 };
  const sent: SentMessage[] = [];
  const reads: GraphSimulator['reads'] = [];
  const throughput = new Map<string, TokenBucket>();
  const pairs = new Map<string, TokenBucket>();
  const timers = new Set<NodeJS.Timeout>();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  const postWebhook = (payload: unknown) => {
    if (!config.webhookUrl) return;
    const body = JSON.stringify(payload);
    const sig = 'sha256=' + createHmac('sha256', config.appSecret).update(body).digest('hex');
    const attempt = (n: number) => {
      const req = http.request(config.webhookUrl, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'x-hub-signature-256': sig, 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.resume();
        // Meta retries what was not answered 200, with backoff.
        if (res.statusCode !== 200 && n < 5) later(200 * 2 ** n, () => attempt(n + 1));
        else stats.webhooksSent++;
      });
      req.on('error', () => n < 5 && later(200 * 2 ** n, () => attempt(n + 1)));
      req.end(body);
    };
    attempt(0);
  };

  const statusWebhooks = (m: SentMessage, failure?: number) => {
    const ts = () => String(Math.floor(Date.now() / 1000));
    const status = (s: string, extra: Record<string, unknown> = {}) => ({
      object: 'whatsapp_business_account',
      entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550783881', phone_number_id: m.phoneNumberId }, statuses: [{ id: m.wamid, status: s, timestamp: ts(), ...(m.byUserId ? { recipient_user_id: m.to } : { recipient_id: m.to }), ...extra }] } }] }],
    });
    const seq = failure
      ? [status('sent'), status('failed', { errors: [{ code: failure, title: ERRORS[failure]?.message ?? 'failed', message: ERRORS[failure]?.message ?? 'failed', error_data: { details: ERRORS[failure]?.message ?? 'failed' } }] })]
      : config.deliverAndRead
        ? [status('sent', { conversation: { id: 'conv', origin: { type: 'service' } }, pricing: { billable: true, pricing_model: 'PMP', category: 'service' } }), status('delivered'), status('read')]
        : [status('sent')];
    const callback = typeof m.body.biz_opaque_callback_data === 'string' ? m.body.biz_opaque_callback_data : undefined;
    if (callback && config.statusCallbackData) for (const p of seq) (p.entry[0]!.changes[0]!.value.statuses[0] as Record<string, unknown>).biz_opaque_callback_data = callback;
    if (Math.random() < config.reorderRate) seq.reverse();
    seq.forEach((p, i) => {
      later(config.statusDelayMs * (i + 1), () => {
        postWebhook(p);
        if (Math.random() < config.duplicateRate) postWebhook(p);
      });
    });
  };

  const acceptedByCallback = () => {
    const counts = new Map<string, number>();
    for (const m of sent) {
      const cb = m.body.biz_opaque_callback_data;
      if (typeof cb === 'string') counts.set(cb, (counts.get(cb) ?? 0) + 1);
    }
    return counts;
  };

  // A token is valid for media when it is a number's (for an upload: that number's).
  let baseUrl = '';
  const media = new SimMedia(config, (token, phoneNumberId) => (phoneNumberId ? tokens.get(phoneNumberId) === token : [...tokens.values()].includes(token)), () => baseUrl);
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://sim');
    const parts = url.pathname.split('/').filter(Boolean);
    try {
      if (parts[0] === '_sim') {
        if (req.method === 'GET' && parts[1] === 'accepted') return send(res, 200, { stats, byCallback: Object.fromEntries(acceptedByCallback()) });
        if (req.method === 'POST' && parts[1] === 'config') {
          Object.assign(config, (await readJson(req)) as Partial<SimulatorConfig>);
          return send(res, 200, config);
        }
        return send(res, 404, errorBody(100, `unknown path ${url.pathname}`).body);
      }
      if (await media.handle(req, res, parts, (status, body) => send(res, status, body), (code, details, status) => {
        stats.errors[code] = (stats.errors[code] ?? 0) + 1;
        const e = errorBody(code, details);
        send(res, status ?? e.status, e.body);
      })) return;
      if (req.method !== 'POST' || parts.length !== 3 || parts[2] !== 'messages' || !/^v\d+\.\d+$/.test(parts[0]!)) {
        return send(res, 404, errorBody(100, `unknown path ${url.pathname}`).body);
      }
      stats.requests++;
      const phoneNumberId = parts[1]!;
      const fail = (code: number, details?: string) => {
        stats.errors[code] = (stats.errors[code] ?? 0) + 1;
        const e = errorBody(code, details);
        return send(res, e.status, e.body);
      };
      await new Promise((r) => setTimeout(r, config.latencyMs + Math.random() * config.jitterMs));
      const token = (req.headers.authorization ?? '').replace(/^Bearer\s+/i, '');
      const expected = tokens.get(phoneNumberId);
      if (!expected || token !== expected) return fail(190);
      const body = (await readJson(req)) as Record<string, unknown>;
      if (config.outage) return fail(2);
      // A read receipt for a message the user sent: `{ success: true }`, not a send.
      if (body.messaging_product === 'whatsapp' && body.status === 'read') {
        if (typeof body.message_id !== 'string' || body.message_id === '') return fail(100, 'message_id is required');
        reads.push({ phoneNumberId, wamid: body.message_id, at: Date.now() });
        return send(res, 200, { success: true });
      }
      // `to` (a phone number) wins over `recipient` (a business-scoped user id), as at Meta.
      const input = typeof body.to === 'string' ? body.to : typeof body.recipient === 'string' ? body.recipient : null;
      if (body.messaging_product !== 'whatsapp' || input === null || typeof body.type !== 'string' || !(body.type in body)) {
        return fail(100, 'messaging_product, to or recipient, type and the object named by type are required');
      }
      const byUserId = typeof body.to !== 'string';
      if (byUserId && !/^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$/.test(input)) return fail(100, 'recipient is not a business-scoped user id');
      const to = input.replace(/^\+/, '');
      const transit = config.transitDelays[to]?.shift();
      if (transit) await new Promise((r) => setTimeout(r, transit));
      const now = Date.now();
      // A one-second burst of the number's rate, refilled continuously (a new bucket when the rate is reconfigured).
      const tbKey = `${phoneNumberId}:${config.messagesPerSecond}`;
      let tb = throughput.get(tbKey);
      if (!tb) throughput.set(tbKey, (tb = new TokenBucket(config.messagesPerSecond, config.messagesPerSecond / 1000, now)));
      if (!tb.take(now)) return fail(130429);
      const pairKey = `${phoneNumberId}:${to}:${config.pairBurst}:${config.pairIntervalMs}`;
      let pb = pairs.get(pairKey);
      if (!pb) pairs.set(pairKey, (pb = new TokenBucket(config.pairBurst, 1 / config.pairIntervalMs, now)));
      if (!pb.take(now)) return fail(131056);
      if (Math.random() < config.serverErrorRate) return fail(131000);
      const first = config.failFirst[to];
      if (first && first.times > 0) {
        first.times--;
        return fail(first.code);
      }
      const forced = config.forcedErrors[to];
      if (forced && forced !== 131026) return fail(forced);
      const m: SentMessage = { wamid: wamid(), phoneNumberId, to, byUserId, body, at: now };
      sent.push(m);
      stats.accepted++;
      // 131026 (undeliverable) is accepted by the API and reported as a failed status.
      statusWebhooks(m, forced === 131026 ? 131026 : undefined);
      if (Math.random() < config.dropResponseRate) {
        stats.dropped++;
        // Meta has the message; the caller never hears so. A hung answer ends when the caller gives up.
        if (config.dropMode === 'reset') req.socket.destroy();
        return;
      }
      if (config.responseDelayMs > 0) await new Promise((r) => setTimeout(r, config.responseDelayMs));
      send(res, 200, { messaging_product: 'whatsapp', contacts: [{ input, ...(byUserId ? { user_id: to } : { wa_id: to }) }], messages: [{ id: m.wamid, ...(body.type === 'template' ? { message_status: 'accepted' } : {}) }] });
      m.answeredAt = Date.now();
    } catch (err) {
      send(res, 400, errorBody(100, err instanceof Error ? err.message : String(err)).body);
    }
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve()));
  // The URL callers use (a pod's simulator listens on every address: its Service reaches it).
  const url = (baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  return {
    url,
    config,
    stats,
    sent,
    reads,
    tokens,
    media,
    acceptedByCallback,
    configure(patch) {
      Object.assign(config, patch);
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      agent.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(() => r(undefined)));
    },
  };
}
