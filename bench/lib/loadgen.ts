// A load generator that behaves like Meta's webhook delivery, and the loss verifier.
// It signs every body, sends at a bounded rate over keep-alive connections, and redelivers
// anything not answered 200 with backoff (Meta retries for days; we retry until a deadline).
// Every wamid answered 200 is recorded; `verifyStored` then checks Postgres for each one.
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import pg from 'pg';

export interface Delivery {
  /** The wamid this body carries (a message, or the message a status is about). */
  readonly wamid: string;
  readonly kind: 'message' | 'status';
  /** For a status webhook: the status it reports. */
  readonly status?: 'sent' | 'delivered' | 'read';
  readonly body: string;
}

export interface WebhookSetOptions {
  readonly count: number;
  readonly phoneNumberId: string;
  /** Unique per run so runs never collide in one database. @default random */
  readonly prefix?: string;
  /** Distinct customers the messages come from. @default 200 */
  readonly contacts?: number;
  /**
   * Per message, also the business's reply from the WhatsApp Business app (an
   * `smb_message_echoes` webhook, stored as an outbound message) and a `delivered` and a `read`
   * status webhook for that reply: statuses only ever concern messages the business sent.
   * @default false
   */
  readonly statuses?: boolean;
  /** @default 640 (a typical Meta text webhook) */
  readonly size?: number;
}

/** Distinct inbound text-message webhooks (one message each), plus their statuses if asked. */
export function webhookSet(opts: WebhookSetOptions): Delivery[] {
  const prefix = opts.prefix ?? randomBytes(4).toString('hex').toUpperCase();
  const out: Delivery[] = [];
  const meta = { display_phone_number: '15550783881', phone_number_id: opts.phoneNumberId };
  const envelope = (value: Record<string, unknown>, field = 'messages') => JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '102290129340398', changes: [{ field, value: { messaging_product: 'whatsapp', metadata: meta, ...value } }] }],
  });
  for (let i = 0; i < opts.count; i++) {
    const waId = `5511${String(i % (opts.contacts ?? 200)).padStart(9, '0')}`;
    const wamid = `wamid.CHAOS${prefix}${String(i).padStart(9, '0')}`;
    const ts = String(1_760_000_000 + i);
    const build = (text: string) => envelope({
      contacts: [{ profile: { name: `Customer ${i % (opts.contacts ?? 200)}` }, wa_id: waId }],
      messages: [{ from: waId, id: wamid, timestamp: ts, type: 'text', text: { body: text } }],
    });
    const pad = Math.max(0, (opts.size ?? 640) - build('').length);
    out.push({ wamid, kind: 'message', body: build('Oi, meu pedido chegou? '.repeat(Math.ceil(pad / 23)).slice(0, pad)) });
    if (opts.statuses) {
      const reply = `wamid.CHAOS${prefix}R${String(i).padStart(9, '0')}`;
      out.push({
        wamid: reply, kind: 'message',
        body: envelope({ message_echoes: [{ from: meta.display_phone_number, to: waId, id: reply, timestamp: String(Number(ts) + 1), type: 'text', text: { body: `Chegou sim, pedido ${i}` } }] }, 'smb_message_echoes'),
      });
      for (const status of ['delivered', 'read'] as const) {
        out.push({
          wamid: reply, kind: 'status', status,
          body: envelope({ statuses: [{ id: reply, status, timestamp: String(Number(ts) + (status === 'read' ? 3 : 2)), recipient_id: waId }] }),
        });
      }
    }
  }
  return out;
}

export interface LoadOptions {
  /** The webhook URL (nginx or one web process). */
  readonly url: string;
  readonly appSecret: string;
  readonly deliveries: readonly Delivery[];
  /** Requests per second, first deliveries and redeliveries together. */
  readonly rate: number;
  /** @default 32 */
  readonly concurrency?: number;
  /** Send every delivery this many times (Meta redelivers). @default 1 */
  readonly copies?: number;
  /** Shuffle the copies (statuses may then arrive before their message). @default false */
  readonly shuffle?: boolean;
  /**
   * Make every copy after the first a different byte string of the same JSON (other
   * whitespace), so only the wamid can tell it is a copy, not the body's hash. @default false
   */
  readonly varyCopies?: boolean;
  /** Redelivery backoff: base, doubling, capped. @default 200 / 2000 ms */
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
  /** Stop redelivering after this long; what is still unacked is reported as not acked. @default 120 s */
  readonly deadlineMs?: number;
  /** Per-request timeout. @default 10 s */
  readonly timeoutMs?: number;
  /** Called with every answer (ms since start, HTTP status or 0 for a network error, the request's own send time in ms since start). */
  readonly onAnswer?: (atMs: number, status: number, d: Delivery, sentAtMs: number) => void;
  readonly signal?: AbortSignal;
}

export interface LoadReport {
  /** Distinct webhook bodies (messages and statuses) we set out to deliver. */
  readonly webhooks: number;
  /** Distinct messages among them. */
  readonly messages: number;
  /** HTTP requests made, copies and redeliveries included. */
  readonly requests: number;
  /** Redeliveries after a non-200 or a network error. */
  readonly retried: number;
  /** Message wamids answered 200 at least once. */
  readonly ackedMessages: ReadonlySet<string>;
  /** Status webhooks answered 200 at least once (any copy): wamid → statuses. */
  readonly ackedStatuses: ReadonlyMap<string, ReadonlySet<string>>;
  /** The delivered bodies (originals, not copies) answered 200 at least once. */
  readonly ackedBodies: ReadonlySet<string>;
  /** Bodies (message or status) never answered 200 before the deadline. */
  readonly unacked: number;
  readonly answers: Readonly<Record<string, number>>;
  readonly seconds: number;
  readonly latencyMs: { p50: number; p99: number };
}

const sign = (secret: string, body: string) => 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');

function shuffled<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

function post(agent: http.Agent, url: URL, body: string, signature: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request(url, {
      method: 'POST', agent, timeout: timeoutMs,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-hub-signature-256': signature },
    }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
      res.once('error', () => resolve(0));
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', () => resolve(0));
    req.end(body);
  });
}

/** Delivers every body like Meta does, until all are acked or the deadline passes. */
export async function runLoad(opts: LoadOptions): Promise<LoadReport> {
  const url = new URL(opts.url);
  const concurrency = opts.concurrency ?? 32;
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const initial: { d: Delivery; attempt: number }[] = [];
  // Every copy's body → the webhook it copies: one copy acked counts for all of them.
  const original = new Map<string, string>();
  for (let c = 0; c < (opts.copies ?? 1); c++) {
    for (const d of opts.deliveries) {
      const copy = c > 0 && opts.varyCopies ? { ...d, body: JSON.stringify(JSON.parse(d.body), null, c) } : d;
      original.set(copy.body, d.body);
      initial.push({ d: copy, attempt: 0 });
    }
  }
  const signatures = new Map(initial.map(({ d }) => [d.body, sign(opts.appSecret, d.body)]));
  const ready = opts.shuffle ? shuffled(initial) : initial;
  const acked = new Set<string>();
  const ackedStatuses = new Map<string, Set<string>>();
  const ackedBodies = new Set<string>();
  const answers: Record<string, number> = {};
  const latencies: number[] = [];
  let requests = 0;
  let retried = 0;
  let waitingRetries = 0;
  const start = Date.now();
  const deadline = start + (opts.deadlineMs ?? 120_000);
  const interval = 1000 / opts.rate;
  let nextSlot = start;
  const timers = new Set<NodeJS.Timeout>();

  const worker = async () => {
    while (Date.now() < deadline && !opts.signal?.aborted) {
      const item = ready.shift();
      if (!item) {
        if (waitingRetries === 0) return;
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      // A delivery whose body was acked meanwhile (another copy) still goes: Meta does send copies.
      const slot = nextSlot;
      nextSlot = Math.max(nextSlot + interval, Date.now() - 1000);
      const wait = slot - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const t0 = performance.now();
      const sentAt = Date.now() - start;
      const status = await post(agent, url, item.d.body, signatures.get(item.d.body)!, opts.timeoutMs ?? 10_000);
      latencies.push(performance.now() - t0);
      requests++;
      answers[String(status)] = (answers[String(status)] ?? 0) + 1;
      opts.onAnswer?.(Date.now() - start, status, item.d, sentAt);
      const key = original.get(item.d.body)!;
      if (status === 200) {
        ackedBodies.add(key);
        if (item.d.kind === 'message') acked.add(item.d.wamid);
        else if (item.d.status) ackedStatuses.set(item.d.wamid, (ackedStatuses.get(item.d.wamid) ?? new Set()).add(item.d.status));
      } else if (!ackedBodies.has(key)) {
        retried++;
        waitingRetries++;
        const delay = Math.min(opts.retryMaxMs ?? 2_000, (opts.retryBaseMs ?? 200) * 2 ** item.attempt);
        const t = setTimeout(() => {
          timers.delete(t);
          waitingRetries--;
          ready.push({ d: item.d, attempt: item.attempt + 1 });
        }, delay);
        timers.add(t);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  for (const t of timers) clearTimeout(t);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]! : 0;
  return {
    webhooks: opts.deliveries.length,
    messages: new Set(opts.deliveries.filter((d) => d.kind === 'message').map((d) => d.wamid)).size,
    requests,
    retried,
    ackedMessages: acked,
    ackedStatuses,
    ackedBodies,
    unacked: opts.deliveries.filter((d) => !ackedBodies.has(d.body)).length,
    answers,
    seconds: (Date.now() - start) / 1000,
    latencyMs: { p50: Math.round(q(0.5) * 10) / 10, p99: Math.round(q(0.99) * 10) / 10 },
  };
}

export interface VerifyReport {
  /** Messages (of all sent) found in Postgres. */
  readonly stored: number;
  /** Acked (answered 200) but not in Postgres: lost. */
  readonly missing: number;
  /**
   * Messages counted twice where no UNIQUE index protects: per conversation, the unread count
   * above the inbound messages it holds (nobody reads during a run, so they must be equal).
   * Per conversation, so an excess in one cannot hide behind a shortfall in another.
   */
  readonly duplicated: number;
  /** Per conversation, unread counts below the inbound messages stored (an increment lost). */
  readonly unreadShort: number;
  /** Stored messages whose status is not the highest one acked for them. */
  readonly statusMismatches: number;
  /** Acked (wamid, status) pairs with no row in message_statuses. */
  readonly statusRowsMissing: number;
  /** Seconds until every acked message was in Postgres with its statuses (or the timeout). */
  readonly drainSeconds: number;
  /** Epoch ms when every acked message was found (or the timeout hit). */
  readonly doneAt: number;
  readonly missingSample: string[];
}

const RANK: Record<string, number> = { sent: 1, delivered: 2, read: 3 };

/**
 * Waits until every acked message is stored with its acked statuses applied (bounded), then
 * counts. Connects to Postgres directly, so the answer does not depend on PgBouncer.
 */
export async function verifyStored(
  databaseUrl: string, allWamids: readonly string[], acked: ReadonlySet<string>,
  opts: {
    timeoutMs?: number;
    /** Give up early once no acked message has appeared for this long (a run expected to lose some). */
    stallMs?: number | undefined;
    statuses?: ReadonlyMap<string, ReadonlySet<string>>;
  } = {},
): Promise<VerifyReport> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const start = Date.now();
  try {
    const ackedList = [...acked];
    const expected = new Map([...(opts.statuses ?? new Map<string, ReadonlySet<string>>())].map(([w, set]) => [w, [...set].sort((a, b) => RANK[b]! - RANK[a]!)[0]!]));
    const statusPairs = [...(opts.statuses ?? new Map<string, ReadonlySet<string>>())].flatMap(([w, set]) => [...set].map((st) => `${w} ${st}`));
    const countStatuses = async () => {
      const { rows } = await client.query<{ wamid: string; status: string }>('SELECT wamid, status FROM messages WHERE wamid = ANY($1)', [[...expected.keys()]]);
      const mismatches = rows.filter((r) => r.status !== expected.get(r.wamid)).length;
      const present = (await client.query<{ n: number }>("SELECT count(*)::int AS n FROM message_statuses WHERE wamid || ' ' || status = ANY($1)", [statusPairs])).rows[0]!.n;
      return { mismatches, rowsMissing: statusPairs.length - present };
    };
    const deadline = start + (opts.timeoutMs ?? 120_000);
    let st = { mismatches: 0, rowsMissing: 0 };
    let last = { found: -1, at: start };
    while (Date.now() < deadline) {
      const found = (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM messages WHERE wamid = ANY($1)', [ackedList])).rows[0]!.n;
      if (found !== last.found) last = { found, at: Date.now() };
      else if (opts.stallMs !== undefined && Date.now() - last.at > opts.stallMs) break;
      if (found >= ackedList.length) {
        st = await countStatuses();
        if (st.mismatches === 0 && st.rowsMissing === 0) break;
      }
      await new Promise((res) => setTimeout(res, 250));
    }
    const doneAt = Date.now();
    st = await countStatuses();
    const stored = (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM messages WHERE wamid = ANY($1)', [allWamids])).rows[0]!.n;
    const unread = (await client.query<{ over: number; short: number }>(
      `WITH conv AS (
         SELECT c.id, c.unread_count AS unread,
                (SELECT count(*)::int FROM messages m WHERE m.conversation_id = c.id AND m.direction = 'inbound' AND m.source = 'live') AS inbound
           FROM conversations c WHERE c.id IN (SELECT DISTINCT conversation_id FROM messages WHERE wamid = ANY($1)))
       SELECT coalesce(sum(GREATEST(0, unread - inbound)), 0)::int AS over, coalesce(sum(GREATEST(0, inbound - unread)), 0)::int AS short FROM conv`,
      [allWamids],
    )).rows[0]!;
    const present = new Set((await client.query<{ wamid: string }>('SELECT wamid FROM messages WHERE wamid = ANY($1)', [ackedList])).rows.map((r) => r.wamid));
    const missing = ackedList.filter((w) => !present.has(w));
    return {
      stored, missing: missing.length, duplicated: unread.over, unreadShort: unread.short,
      statusMismatches: st.mismatches, statusRowsMissing: st.rowsMissing,
      drainSeconds: (doneAt - start) / 1000, doneAt, missingSample: missing.slice(0, 5),
    };
  } finally {
    await client.end();
  }
}
