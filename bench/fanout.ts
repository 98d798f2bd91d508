// Realtime fan-out: 1,000 SSE clients on /v1/events spread over 2 web processes (+1 worker),
// 200 signed webhook messages/s in for a bounded time. Latency: from the commit of the message
// row's transaction (pg_xact_commit_timestamp of its xmin; the bench's Postgres tracks commit
// times) to each client receiving its `message.created`, on the wall clock both sides share.
// Also: clients dropped, clients that missed an event, the web processes' RSS per 1,000 clients,
// and CPU time per 1,000 deliveries (one event to one client) of the SSE servers and of the
// client processes (which must stay small beside the servers' for the latency to be theirs). Baseline, same run: two bare node:http SSE servers fed by the same worker
// through the same Redis channel, the same clients, the same load, with the service's two SSE
// processes stopped (the webhooks come in through a third web process, up in both phases).
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { sleep } from '../scripts/stack/proc.js';
import { cpuSeconds } from './lib/cpu.js';
import { runLoad, webhookSet } from './lib/loadgen.js';
import { result, type BenchResult } from './lib/results.js';
import { APP_SECRET, PHONE_NUMBER_ID, ROOT, startBaseline, startRole, type BenchStack, type Proc } from './lib/stack.js';

const API_TOKEN = 'bench-api-token-0123456789';
const CLIENTS = 1_000;
const RATE = 200;
/** Processes holding the clients (reading 1,000 streams in one is a core's worth of work). */
const CLIENT_PROCESSES = 2;
const TARGET_P99_MS = 100;
const QUEUE_PREFIX = 'bench-fanout';
/** Seconds of the same load before the first phase, unmeasured. */
const WARMUP_SECONDS = 5;

interface Report {
  bins: [number, number][];
  n: number;
  expected: number;
  dropped: number;
  short: number;
  cpuSeconds: number;
}

interface Phase {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly received: number;
  readonly expected: number;
  readonly dropped: number;
  readonly short: number;
  readonly messages: number;
  /** Of the SSE servers together: before clients, and the peak with clients under load (MB). */
  readonly rssIdleMb: number;
  /** With the clients connected, before any event. */
  readonly rssConnectedMb: number;
  readonly rssPeakMb: number;
  readonly load: string;
  /** Messages acked per second, first POST to last 200, and webhooks never answered 200. */
  readonly inRate: number;
  readonly unacked: number;
  /** The row's commit → the event seen by a plain subscriber of the channel, a process of its own (ms): the worker's part of the latency. */
  readonly publishP50: number;
  readonly publishP99: number;
  /** PUBLISHes seen on the events channel (each a batch of events). */
  readonly publishes: number;
  /** CPU seconds during the load, of the SSE servers together and of the client processes together. */
  readonly serverCpuS: number;
  readonly clientCpuS: number;
  /** Row created_at (its statement's start) → its commit, p50 (ms): what the old measure added. */
  readonly createdToCommitP50: number;
}

const rssMb = (pid: number) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
};

function ask<T>(child: ChildProcess, msg: object, key: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`client process: no ${key} in ${timeoutMs} ms`)), timeoutMs);
    const on = (m: Record<string, unknown>) => {
      if (!(key in m)) return;
      clearTimeout(t);
      child.off('message', on);
      resolve(m as T);
    };
    child.on('message', on);
    child.send(msg);
  });
}

/** `offered`: the messages and the rate sent to the ingress (the rate a phase reaches may be lower). */
async function phase(stack: BenchStack, sseUrls: string[], serverPids: number[], ingress: string, offered: { count: number; rate: number }): Promise<Phase> {
  const rssIdle = serverPids.reduce((s, p) => s + rssMb(p), 0);
  // A subscriber of its own on the events channel: how much of the latency is spent before the
  // SSE servers get the event (commit, publish, Redis), the rest being theirs and the clients'.
  const tap = fork(path.join(ROOT, 'bench', 'lib', 'channel-tap.ts'), [stack.redis.url, `${QUEUE_PREFIX}:events`], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    tap.once('message', () => resolve());
    tap.once('exit', (code) => reject(new Error(`channel tap exited ${code}`)));
  });
  const procs = Array.from({ length: CLIENT_PROCESSES }, () => fork(path.join(ROOT, 'bench', 'lib', 'sse-clients.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  try {
    const per = CLIENTS / CLIENT_PROCESSES;
    const connected = await Promise.all(procs.map((c) => ask<{ connected: number; failed: number }>(c, { connect: { urls: sseUrls, count: per, token: API_TOKEN } }, 'connected', 120_000)));
    const failed = connected.reduce((s, c) => s + c.failed, 0);
    if (failed) throw new Error(`${failed} of ${CLIENTS} SSE clients could not connect`);
    await sleep(1_000);
    await Promise.all(procs.map((c) => ask(c, { start: true }, 'started', 10_000)));
    const serverCpuBefore = serverPids.reduce((s, p) => s + cpuSeconds(p), 0);
    const rssConnected = serverPids.reduce((s, p) => s + rssMb(p), 0);
    let rssPeak = rssConnected;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, serverPids.reduce((s, p) => s + rssMb(p), 0))), 500);
    const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
    const deliveries = webhookSet({ count: offered.count, phoneNumberId: PHONE_NUMBER_ID, prefix: `FAN${randomBytes(3).toString('hex').toUpperCase()}` });
    let lastAckMs = 0;
    // Enough in flight for the offered rate when a loaded host answers a webhook in a few hundred ms.
    const sent = await runLoad({
      url: ingress, appSecret: APP_SECRET, deliveries, rate: offered.rate, concurrency: 64, deadlineMs: (offered.count / offered.rate) * 1000 + 30_000,
      onAnswer: (atMs, status) => {
        if (status === 200) lastAckMs = atMs;
      },
    });
    const acked = [...sent.ackedMessages];
    console.log(`  fanout: webhooks answered ${JSON.stringify(sent.answers)} in ${sent.seconds.toFixed(1)} s, p99 ${sent.latencyMs.p99} ms`);
    // Every acked message stored (bounded).
    const deadline = Date.now() + 60_000;
    let commits: [number, number][] = [];
    let createdToCommit: number[] = [];
    while (Date.now() < deadline) {
      // A row changed after its insert carries that change's xmin, so a later commit time (erring
      // low): nothing changes these inbound text rows in this run, and the check below holds it.
      const { rows } = await stack.pool.query<{ id: string; at: number; created: number }>(
        'SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 * 1000 AS at, extract(epoch FROM created_at)::float8 * 1000 AS created FROM messages WHERE wamid = ANY($1)', [acked]);
      commits = rows.map((r) => [Number(r.id), r.at]);
      createdToCommit = rows.map((r) => r.at - r.created).sort((a, b) => a - b);
      if (commits.length >= acked.length) break;
      await sleep(250);
    }
    if (createdToCommit.length && (createdToCommit[0]! < 0 || createdToCommit.at(-1)! > 60_000)) throw new Error(`message rows' commit times do not follow their created_at (${createdToCommit[0]} … ${createdToCommit.at(-1)} ms): a row was changed after its insert`);
    // The client processes answer once every client has every event, or after their drain time.
    const reports = await Promise.all(procs.map((c) => ask<{ report: Report }>(c, { commits }, 'report', 120_000)));
    clearInterval(sampler);
    const serverCpuS = serverPids.reduce((s, p) => s + cpuSeconds(p), 0) - serverCpuBefore;
    const bins = new Map<number, number>();
    for (const { report } of reports) for (const [b, n] of report.bins) bins.set(b, (bins.get(b) ?? 0) + n);
    const sorted = [...bins].sort((a, b) => a[0] - b[0]);
    const received = sorted.reduce((s, [, n]) => s + n, 0);
    const at = (p: number) => {
      let seen = 0;
      for (const [b, n] of sorted) if ((seen += n) >= p * received) return b / 10;
      return NaN;
    };
    const { publishes, arrivals } = await ask<{ publishes: number; arrivals: [number, number][] }>(tap, { report: true }, 'arrivals', 30_000);
    const publishedAt = new Map(arrivals);
    const toPublish = commits.flatMap(([id, committedAt]) => (publishedAt.has(id) ? [publishedAt.get(id)! - committedAt] : [])).sort((a, b) => a - b);
    const pubAt = (p: number) => toPublish[Math.min(toPublish.length - 1, Math.floor(p * toPublish.length))] ?? NaN;
    return {
      publishP50: Math.round(pubAt(0.5) * 10) / 10, publishP99: Math.round(pubAt(0.99) * 10) / 10,
      p50: at(0.5), p99: at(0.99), max: (sorted.at(-1)?.[0] ?? NaN) / 10, received,
      expected: reports.reduce((s, r) => s + r.report.expected, 0),
      dropped: reports.reduce((s, r) => s + r.report.dropped, 0),
      short: reports.reduce((s, r) => s + r.report.short, 0),
      publishes, serverCpuS, clientCpuS: reports.reduce((s, r) => s + r.report.cpuSeconds, 0),
      createdToCommitP50: Math.round((createdToCommit[Math.floor(createdToCommit.length / 2)] ?? NaN) * 10) / 10,
      messages: commits.length, rssIdleMb: rssIdle, rssConnectedMb: rssConnected, rssPeakMb: rssPeak, load, inRate: sent.ackedMessages.size / Math.max(0.001, lastAckMs / 1000), unacked: sent.unacked,
    };
  } finally {
    if (tap.connected) tap.kill();
    for (const c of procs) {
      if (c.connected) c.send({ close: true });
    }
    await Promise.all(procs.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
  }
}

/** CPU milliseconds per 1,000 deliveries (one event received by one client). */
const cpuPerThousand = (seconds: number, p: Phase) => (seconds * 1e6) / Math.max(1, p.received);

const summary = (p: Phase) =>
  `p50 ${p.p50} p99 ${p.p99} max ${p.max} ms (commit → published p50 ${p.publishP50} p99 ${p.publishP99} ms in ${p.publishes} PUBLISHes; created_at → commit p50 ${p.createdToCommitP50} ms), ${p.received}/${p.expected} events, ${p.dropped} dropped, `
  + `CPU per 1,000 deliveries: servers ${cpuPerThousand(p.serverCpuS, p).toFixed(2)} ms, clients ${cpuPerThousand(p.clientCpuS, p).toFixed(2)} ms (${p.serverCpuS.toFixed(1)} / ${p.clientCpuS.toFixed(1)} s), `
  + `RSS ${p.rssIdleMb.toFixed(0)} → ${p.rssConnectedMb.toFixed(0)} (connected) → ${p.rssPeakMb.toFixed(0)} MB (peak), load ${p.load}`;

/**
 * The worker, the ingress web process and Postgres start cold right before the first phase (the
 * service's), which then paid their warm-up alone: on a quiet host its commit → PUBLISH seen by a
 * plain subscriber (the worker's part, before any SSE server) had p99 103 ms against the bare
 * phase's 50 ms, and created_at → commit p50 10 against 4.5 ms, with the same worker and less
 * SSE server CPU. The same load, unmeasured, first; then what it stored is committed.
 */
async function warmUp(stack: BenchStack, ingress: string, log: (s: string) => void): Promise<void> {
  const deliveries = webhookSet({ count: RATE * WARMUP_SECONDS, phoneNumberId: PHONE_NUMBER_ID, prefix: `WARM${randomBytes(3).toString('hex').toUpperCase()}` });
  const sent = await runLoad({ url: ingress, appSecret: APP_SECRET, deliveries, rate: RATE, concurrency: 64, deadlineMs: WARMUP_SECONDS * 1000 + 30_000 });
  const acked = [...sent.ackedMessages];
  const deadline = Date.now() + 60_000;
  let stored = 0;
  while (Date.now() < deadline) {
    stored = (await stack.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM messages WHERE wamid = ANY($1)', [acked])).rows[0]!.n;
    if (stored >= acked.length) break;
    await sleep(250);
  }
  log(`warm-up: ${acked.length} webhooks at ${RATE}/s through the same worker and ingress, ${stored} stored, not measured`);
}

/** Every client is a socket at each end: the limit must hold them with room to spare. */
function checkFileLimit(): number {
  const limit = Number(execFileSync('sh', ['-c', 'ulimit -n']).toString().trim());
  if (Number.isFinite(limit) && limit < CLIENTS + 1024) throw new Error(`ulimit -n is ${limit}: the fan-out benchmark needs at least ${CLIENTS + 1024} (raise it, e.g. ulimit -n 65536)`);
  return limit;
}

export async function fanoutBench(stack: BenchStack, seconds: number): Promise<BenchResult[]> {
  const fileLimit = checkFileLimit();
  const env = stack.serviceEnv({ QUEUE_PREFIX });
  const started: Proc[] = [];
  const log = (s: string) => console.log(`  fanout: ${s}`);
  try {
    // The webhooks come in through a web process of their own, there in both phases: the phases
    // then differ only in the two SSE servers compared (a web process subscribes to the events
    // only once a client listens, so this one holds no subscription).
    started.push(await startRole('worker', env));
    const ingressWeb = await startRole('web', env);
    started.push(ingressWeb);
    const ingress = `http://127.0.0.1:${ingressWeb.port}/webhooks/whatsapp`;
    await warmUp(stack, ingress, log);
    const webs = [await startRole('web', env), await startRole('web', env)];
    started.push(...webs);
    const service = await phase(stack, webs.map((w) => `http://127.0.0.1:${w.port}/v1/events?types=message.created`), webs.map((w) => w.child.pid!), ingress, { count: RATE * seconds, rate: RATE });
    log(`service: ${summary(service)}`);
    for (const w of webs) {
      await w.stop();
      started.splice(started.indexOf(w), 1);
    }
    const bare = [
      await startBaseline(path.join(ROOT, 'bench', 'baselines', 'bare-sse.ts'), [stack.redis.url, `${QUEUE_PREFIX}:events`]),
      await startBaseline(path.join(ROOT, 'bench', 'baselines', 'bare-sse.ts'), [stack.redis.url, `${QUEUE_PREFIX}:events`]),
    ];
    started.push(...bare);
    // The same offered load as the service took: a saturated host's ingress may not reach RATE, and
    // a baseline fed more events per second than the service was would not compare.
    const base = await phase(stack, bare.map((b) => `http://127.0.0.1:${b.port}/?types=message.created`), bare.map((b) => b.child.pid!), ingress, { count: service.messages, rate: Math.min(RATE, service.inRate) });
    log(`bare: ${summary(base)}; p99 ratio ${(service.p99 / base.p99).toFixed(2)}, server CPU ratio ${(cpuPerThousand(service.serverCpuS, service) / cpuPerThousand(base.serverCpuS, base)).toFixed(2)}`);
    const perThousand = (p: Phase) => ((p.rssPeakMb - p.rssIdleMb) / CLIENTS) * 1000;
    const lost = service.expected - service.received;
    const problems = [service.unacked && `${service.unacked} webhooks not acked`, service.dropped && `${service.dropped} clients dropped`, lost && `${lost} events not received (${service.short} clients short)`].filter(Boolean).join(', ');
    return [
      result({
        name: 'realtime.fanout_p99_ms', value: service.p99, unit: 'ms', baseline: base.p99, baselineName: 'bare node:http SSE', target: TARGET_P99_MS, targetKind: 'max',
        note: `message row's commit (pg_xact_commit_timestamp; created_at → commit p50 ${service.createdToCommitP50} ms) → message.created at each of ${CLIENTS} SSE clients over 2 web processes (+1 worker, +1 web process taking the webhooks in both phases), ${RATE} signed webhooks/s for ${seconds} s `
          + `(${service.messages} messages stored, in at ${service.inRate.toFixed(0)}/s, ${service.unacked} unacked; ${service.received}/${service.expected} deliveries, p50 ${service.p50} ms, max ${service.max} ms, ${service.dropped} clients dropped; commit → event at a plain subscriber of the channel p50 ${service.publishP50} p99 ${service.publishP99} ms, the rest is the SSE servers' and the clients'); `
          + `baseline (the service's SSE processes stopped): 2 bare node:http SSE servers on the same Redis channel, same worker and ingress, the service's message count at the rate it took (p50 ${base.p50} ms, commit → published p99 ${base.publishP99} ms, in at ${base.inRate.toFixed(0)}/s, ${base.received}/${base.expected} deliveries); ulimit -n ${fileLimit}; load average ${service.load} (baseline phase ${base.load})`,
        ...(problems ? { failed: problems } : {}),
      }),
      result({
        name: 'realtime.rss_mb_per_1000_clients', value: perThousand(service), unit: 'MB', baseline: perThousand(base), baselineName: 'bare node:http SSE', target: null,
        note: `peak RSS of the 2 web processes under load minus before the clients connected, per 1,000 clients (${service.rssIdleMb.toFixed(0)} → ${service.rssPeakMb.toFixed(0)} MB for both, ${service.rssConnectedMb.toFixed(0)} MB connected before the load); `
          + `baseline: the same for the 2 bare servers (${base.rssIdleMb.toFixed(0)} → ${base.rssPeakMb.toFixed(0)} MB)`,
      }),
      result({
        name: 'realtime.fanout_cpu_ms_per_1000_deliveries', value: cpuPerThousand(service.serverCpuS, service), unit: 'ms', baseline: cpuPerThousand(base.serverCpuS, base), baselineName: 'bare node:http SSE', target: null,
        note: `CPU time (utime + stime) of the 2 SSE web processes during the load and the drain after it, per 1,000 events received by clients (${service.serverCpuS.toFixed(2)} s for ${service.received} deliveries); `
          + `the ${CLIENT_PROCESSES} client processes took ${cpuPerThousand(service.clientCpuS, service).toFixed(2)} ms per 1,000 (baseline phase: servers ${base.serverCpuS.toFixed(2)} s, clients ${cpuPerThousand(base.clientCpuS, base).toFixed(2)} ms per 1,000)`,
      }),
    ];
  } finally {
    for (const p of started.reverse()) await p.stop();
  }
}
