// POST /webhooks/whatsapp, on bare node:http for speed: read the raw bytes (bounded),
// verify the signature over exactly those bytes, check the envelope, enqueue durably,
// and only then answer 200. Any failure to enqueue answers 503 so Meta retries.
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/registry.js';
import { EnqueueTimeoutError, IngestOverloadedError, type IngestProducer } from '../queue/ingest-producer.js';
import { verifySignature } from '../whatsapp/signature.js';
import { checkEnvelope } from '../whatsapp/parse.js';
import type { WebhookLimitCheck } from '../router/rate-limits.js';
import { errorBody, sendJson } from './errors.js';
import { z } from 'zod';
import { defineOperations } from '../openapi/operation.js';

export const WEBHOOK_PATH = '/webhooks/whatsapp';

export interface WebhookDeps {
  readonly appSecret: string;
  readonly maxBytes: number;
  readonly producer: IngestProducer;
  /**
   * Bodies whose every change is a coexistence `history` chunk go here instead: a 50,000-message
   * import never waits in front of live webhooks in the inbound queue.
   */
  readonly historyProducer?: IngestProducer;
  readonly metrics: Metrics;
  readonly log: Logger;
}

const OK_BODY = '{"status":"queued"}';

export const webhookOperations = defineOperations('Webhook', [
  {
    method: 'get', path: WEBHOOK_PATH, summary: "Meta's subscription handshake", auth: 'none', errors: [403],
    query: z.object({ 'hub.mode': z.literal('subscribe'), 'hub.verify_token': z.string(), 'hub.challenge': z.string() }),
    responses: { 200: { description: 'The challenge, echoed', contentType: 'text/plain', schema: z.string() } },
  },
  {
    method: 'post', path: WEBHOOK_PATH, summary: "Meta's webhook events", auth: 'none', outsideExpress: true, errors: [401, 413, 429, 503],
    description: 'Answers 200 only once the event is stored durably; 503 when it could not be, so Meta retries. Signed with the app secret; nothing is stored without a valid signature.',
    headers: z.object({ 'X-Hub-Signature-256': z.string().meta({ description: '`sha256=` and the HMAC-SHA256 of the raw body, keyed with the app secret' }) }),
    body: z.looseObject({ object: z.string(), entry: z.array(z.unknown()) }).meta({ description: "A WhatsApp Business Account webhook envelope, as Meta sends it" }),
    responses: { 200: z.object({ status: z.literal('queued') }) },
  },
]);

export function isWebhookPost(req: IncomingMessage): boolean {
  if (req.method !== 'POST' || !req.url) return false;
  return req.url === WEBHOOK_PATH || req.url.startsWith(WEBHOOK_PATH + '?') || req.url === WEBHOOK_PATH + '/';
}

/**
 * `limited`: asked only when the signature is bad: whether the sender's address is past its limit
 * (refused with 429, else 401). `arrivedAt` (process.hrtime): when the request reached the process,
 * where the answer's duration is timed from.
 */
export function createWebhookHandler(deps: WebhookDeps): (req: IncomingMessage, res: ServerResponse, limited?: WebhookLimitCheck, arrivedAt?: bigint) => void {
  const { metrics, log } = deps;
  return (req, res, limited, arrivedAt) => {
    const started = arrivedAt ?? process.hrtime.bigint();
    let answered = false;
    const answer = (status: number, outcome: string, body: string, headers?: Record<string, string>) => {
      if (answered) return;
      answered = true;
      sendJson(res, status, body, headers);
      metrics.webhook.requests.inc({ outcome });
      metrics.webhook.duration.observe({ outcome }, Number(process.hrtime.bigint() - started) / 1e9);
    };
    const tooLarge = () => {
      answer(413, 'too_large', errorBody('payload_too_large', `body exceeds ${deps.maxBytes} bytes`), { connection: 'close' });
      // Drain what is still coming (bounded) so the client reads our answer, then hang up.
      let drained = 0;
      req.on('data', (c: Buffer) => {
        drained += c.length;
        if (drained > 4 * deps.maxBytes) req.socket.destroy();
      });
    };

    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > deps.maxBytes) {
      tooLarge();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      if (answered) return;
      size += chunk.length;
      if (size > deps.maxBytes) {
        chunks.length = 0;
        tooLarge();
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', () => {
      answered = true;
    });
    req.on('end', () => {
      if (answered) return;
      const raw = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      if (!verifySignature(raw, req.headers['x-hub-signature-256'], deps.appSecret)) {
        void (limited ? limited() : Promise.resolve(undefined)).then((over) => {
          if (over) answer(429, 'rate_limited', errorBody('rate_limited', 'too many badly signed webhook requests from this address'), { 'retry-after': String(over.retryAfterSeconds) });
          else answer(401, 'bad_signature', errorBody('invalid_signature', 'X-Hub-Signature-256 is missing or does not match the body'));
        });
        return;
      }
      const text = raw.toString('utf8');
      let envelope: unknown;
      try {
        envelope = JSON.parse(text);
        checkEnvelope(envelope);
      } catch (err) {
        answer(400, 'malformed', errorBody('malformed_payload', err instanceof SyntaxError ? 'body is not valid JSON' : (err as Error).message));
        return;
      }
      const history = deps.historyProducer ? historyNumber(envelope) : null;
      const enqueued = history !== null
        ? deps.historyProducer!.enqueue({ body: text, receivedAt: Date.now() }, history)
        : deps.producer.enqueue({ body: text, receivedAt: Date.now() });
      enqueued.then(
        () => answer(200, 'accepted', OK_BODY),
        (err: Error) => {
          metrics.webhook.enqueueFailures.inc();
          const reason = err instanceof IngestOverloadedError ? 'overloaded' : err instanceof EnqueueTimeoutError ? 'timeout' : null;
          if (reason) metrics.webhook.enqueueRejections.inc({ reason });
          // A stall or an overload is one line per request otherwise: warn, the metrics count them.
          (reason ? log.warn.bind(log) : log.error.bind(log))({ err: err.message }, 'webhook not enqueued; answered 503 so Meta retries');
          answer(503, reason ?? 'unavailable', errorBody('unavailable', 'the event could not be stored durably; retry later'), { 'retry-after': '5' });
        },
      );
    });
  };
}

/** GET /webhooks/whatsapp: Meta's subscription handshake. */
export function verifyHandshake(verifyToken: string, metrics: Metrics): RequestHandler {
  const expected = Buffer.from(verifyToken);
  return (req, res) => {
    const mode = req.query['hub.mode'];
    const token = req.query['hub.verify_token'];
    const challenge = req.query['hub.challenge'];
    const given = Buffer.from(typeof token === 'string' ? token : '');
    const tokenOk = given.length === expected.length && timingSafeEqual(given, expected);
    if (mode !== 'subscribe' || !tokenOk) {
      metrics.webhook.requests.inc({ outcome: 'verify_rejected' });
      res.status(403).type('application/json').send(errorBody('verification_failed', 'hub.mode must be subscribe and hub.verify_token must match'));
      return;
    }
    if (typeof challenge !== 'string' || challenge.length === 0) {
      res.status(400).type('application/json').send(errorBody('missing_challenge', 'hub.challenge is required'));
      return;
    }
    metrics.webhook.requests.inc({ outcome: 'verified' });
    res.status(200).type('text/plain').send(challenge);
  };
}

/**
 * When every change of the envelope is a `history` chunk (how Meta sends coexistence history):
 * the phone_number_id of the first one (its number's chunks are ordered fairly against other
 * numbers'), else null.
 */
export function historyNumber(envelope: unknown): string | null {
  const entries = (envelope as { entry?: unknown }).entry;
  if (!Array.isArray(entries) || entries.length === 0) return null;
  let number: string | null = null;
  for (const e of entries) {
    const changes = (e as { changes?: unknown } | null)?.changes;
    if (!Array.isArray(changes)) return null;
    for (const c of changes) {
      const change = c as { field?: unknown; value?: { metadata?: { phone_number_id?: unknown } } } | null;
      if (change?.field !== 'history') return null;
      number ??= String(change.value?.metadata?.phone_number_id ?? '');
    }
  }
  return number;
}
