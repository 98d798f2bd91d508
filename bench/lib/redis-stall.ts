// The "redis-stall" chaos scenario: Redis connected but not answering writes (a fork or fsync
// stall, a master cut off during a failover), reproduced with CLIENT PAUSE <ms> WRITE on the
// master while webhooks arrive at a steady rate. What must hold: every webhook is answered within
// ENQUEUE_TIMEOUT_MS + 0.5 s (503 while Redis is silent), nothing answered 200 is lost, the web
// processes' memory stays bounded, and Meta's redeliveries of the refused ones all end stored.
// Open loop (each body sent on schedule, whatever the answers), so a slow answer cannot slow the
// offered load down and hide itself.
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import type { HaStack } from '../../scripts/stack/ha.js';
import { sleep } from '../../scripts/stack/proc.js';
import { verifyStored, webhookSet, type Delivery } from './loadgen.js';

export interface RedisStallOptions {
  readonly rate: number;
  readonly scale: number;
  /** @default 8000 */
  readonly pauseMs?: number;
}

interface Answer {
  readonly d: Delivery;
  readonly sentAt: number;
  readonly ms: number;
  readonly status: number;
}

const rssOf = (pid: number): number => {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
};

function post(agent: http.Agent, url: URL, body: string, secret: string): Promise<number> {
  const signature = 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');
  return new Promise((resolve) => {
    const req = http.request(url, { method: 'POST', agent, timeout: 30_000, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-hub-signature-256': signature } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', () => resolve(0));
    req.end(body);
  });
}

/**
 * Webhook answers the web processes themselves timed above `ms` (their duration histogram, from
 * the request reaching the process to its answer): tells the service's delay apart from the load generator's.
 */
async function slowServerAnswers(stack: HaStack, ms: number): Promise<number | null> {
  const le = String(ms / 1000);
  let slow = 0;
  for (const w of stack.webs) {
    try {
      const text = await (await fetch(`http://127.0.0.1:${w.port}/metrics`)).text();
      for (const line of text.split('\n')) {
        const count = /^wa_router_webhook_duration_seconds_count\{outcome="([^"]+)"\} (\d+)/.exec(line);
        if (count) slow += Number(count[2]);
        const bucket = /^wa_router_webhook_duration_seconds_bucket\{le="([^"]+)",outcome="[^"]+"\} (\d+)/.exec(line);
        if (bucket && bucket[1] === le) slow -= Number(bucket[2]);
      }
    } catch {
      return null;
    }
  }
  return slow;
}

export async function runRedisStall(stack: HaStack, opts: RedisStallOptions) {
  const pauseMs = opts.pauseMs ?? 8_000;
  const deadlineMs = Number(stack.env.ENQUEUE_TIMEOUT_MS ?? 2_000);
  const before = 3_000 * Math.max(opts.scale, 0.5);
  const after = 4_000 * Math.max(opts.scale, 0.5);
  const deliveries = webhookSet({ count: Math.round((opts.rate * (before + pauseMs + after)) / 1000), phoneNumberId: stack.secrets.phoneNumberId });
  const url = new URL(`${stack.url}/webhooks/whatsapp`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2_048 });
  const webPids = () => stack.webs.map((w) => w.pid);

  // RSS of the web processes: a baseline under the same load before the stall, the peak during it.
  let stop = false;
  let phase: 'before' | 'stall' | 'after' = 'before';
  const peak = { before: 0, stall: 0, after: 0 };
  const sampler = (async () => {
    while (!stop) {
      const rss = Math.max(...webPids().map(rssOf));
      peak[phase] = Math.max(peak[phase], rss);
      await sleep(100);
    }
  })();

  // The load generator's own event-loop delay: a late answer it caused itself would show here.
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  const m = await stack.master();
  const admin = new Redis({ host: m.host, port: m.port, password: stack.secrets.password, lazyConnect: true, maxRetriesPerRequest: 1 });
  await admin.connect();
  const t0 = Date.now();
  let pausedAt = 0;
  const fault = (async () => {
    await sleep(before);
    pausedAt = Date.now();
    phase = 'stall';
    await admin.call('CLIENT', 'PAUSE', String(pauseMs), 'WRITE');
    await sleep(pauseMs);
    phase = 'after';
  })();
  const answers: Answer[] = [];
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < deliveries.length; i++) {
    const due = t0 + (i * 1000) / opts.rate;
    // One clock read: a process descheduled between two reads would ask for a negative delay.
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    const d = deliveries[i]!;
    const sentAt = Date.now();
    const p = post(agent, url, d.body, stack.secrets.appSecret).then((status) => {
      answers.push({ d, sentAt, ms: Date.now() - sentAt, status });
    });
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  }
  await Promise.all([...inFlight]);
  loopDelay.disable();
  await fault;
  await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
  admin.disconnect();

  // Meta redelivers what was not answered 200; bounded in rounds and time.
  const acked = new Set(answers.filter((a) => a.status === 200).map((a) => a.d.wamid));
  let refused = deliveries.filter((d) => !acked.has(d.wamid));
  let retried = 0;
  const retryDeadline = Date.now() + 120_000;
  for (let round = 0; refused.length > 0 && round < 20 && Date.now() < retryDeadline; round++) {
    await sleep(Math.min(2_000, 250 * 2 ** round));
    const statuses = await Promise.all(refused.map((d) => post(agent, url, d.body, stack.secrets.appSecret)));
    retried += refused.length;
    refused.forEach((d, i) => statuses[i] === 200 && acked.add(d.wamid));
    refused = refused.filter((d) => !acked.has(d.wamid));
  }
  stop = true;
  await sampler;
  agent.destroy();

  const wamids = deliveries.map((d) => d.wamid);
  // Acked during the first pass only: what the stall itself must not lose.
  const firstPassAcked = new Set(answers.filter((a) => a.status === 200).map((a) => a.d.wamid));
  const v = await verifyStored(stack.directDatabaseUrl, wamids, acked, { timeoutMs: 180_000 });
  const duringStall = answers.filter((a) => a.sentAt >= pausedAt && a.sentAt < pausedAt + pauseMs);
  const slowest = Math.max(...answers.map((a) => a.ms));
  const late = answers.filter((a) => a.ms > deadlineMs + 500).length;
  const byStatus: Record<string, number> = {};
  for (const a of answers) byStatus[a.status] = (byStatus[a.status] ?? 0) + 1;
  // Sentinel sees the paused master as down (its PUBLISH, then PING, wait) and promotes a replica:
  // recovered when a webhook sent after the pause began is acked again.
  const firstOkAt = Math.min(...answers.filter((a) => a.sentAt >= pausedAt && a.status === 200).map((a) => a.sentAt + a.ms));
  const serverSlow = await slowServerAnswers(stack, deadlineMs + 500);
  const mib = (n: number) => Math.round(n / 2 ** 20);
  // Per second of sending, relative to the start of the pause: what was answered, how slowly.
  const timeline = new Map<number, { t: number; sent: number; ok: number; unavailable: number; maxMs: number }>();
  for (const a of answers) {
    const t = Math.floor((a.sentAt - pausedAt) / 1000);
    const row = timeline.get(t) ?? { t, sent: 0, ok: 0, unavailable: 0, maxMs: 0 };
    row.sent++;
    if (a.status === 200) row.ok++;
    else row.unavailable++;
    row.maxMs = Math.max(row.maxMs, a.ms);
    timeline.set(t, row);
  }
  // Bounded: the stall adds no more than the cap on waiting bodies could justify (a body is held
  // about three times over: request, job, command buffer), on top of the steady-state peak.
  const capBytes = Number(stack.env.INGEST_MAX_PENDING_BYTES ?? 32 * 2 ** 20);
  const rssBounded = peak.stall <= peak.before + 3 * capBytes;
  return {
    sent: deliveries.length,
    acked: acked.size,
    stored: v.stored,
    missing: v.missing,
    duplicated: v.duplicated,
    recoverySeconds: Number.isFinite(firstOkAt) ? Math.round((firstOkAt - pausedAt) / 100) / 10 : null,
    recoveredWhen: 'first 200 answered to a webhook sent after the pause began, counted from the start of the pause',
    retried,
    requests: answers.length + retried,
    answers: byStatus,
    drainSeconds: Math.round(v.drainSeconds * 10) / 10,
    doneAt: v.doneAt,
    checks: { answeredWithinDeadline: late === 0, webRssBounded: rssBounded, allStoredAfterRedelivery: v.stored === deliveries.length },
    stall: {
      pauseMs, deadlineMs, ackedFirstPass: firstPassAcked.size, sentDuringStall: duringStall.length, answered503DuringStall: duringStall.filter((a) => a.status === 503).length,
      slowestAnswerMs: slowest, answersOverDeadlinePlus500ms: late, serverAnswersOverDeadlinePlus500ms: serverSlow, loadGeneratorLoopDelayMaxMs: Math.round(loopDelay.max / 1e6), storedAfterRedelivery: v.stored,
      webRssMiB: { before: mib(peak.before), stall: mib(peak.stall), after: mib(peak.after) }, rssBounded,
      timeline: [...timeline.values()].sort((a, b) => a.t - b.t),
    },
    notes: `${late} of ${answers.length} answers over ${deadlineMs + 500} ms (slowest ${slowest} ms); web RSS peak ${mib(peak.before)} MiB before, ${mib(peak.stall)} MiB during the stall; ${v.stored}/${deliveries.length} stored after redelivery`
      + (v.missing ? `; missing e.g. ${v.missingSample.join(', ')}` : ''),
  };
}
