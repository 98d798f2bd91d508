// `make chaos`: the production topology on this host (scripts/stack/ha.ts), broken on purpose
// under load, then counted: every message answered 200 must be in Postgres exactly once.
// Writes bench/results/chaos.json ({"scenarios":[{name,sent,acked,stored,missing,duplicated,recoverySeconds,...}]}).
//   CHAOS_ONLY=redis-master-kill,duplicates   run a subset
//   CHAOS_SCALE=0.5                            shorten every phase (CI)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startHaStack, type HaStack, type HaStackOptions } from '../scripts/stack/ha.js';
import { sleep } from '../scripts/stack/proc.js';
import pg from 'pg';
import { historyChunks } from './lib/history.js';
import { graphTimeouts, GRAPH_TIMEOUTS_ENV } from './lib/graph-timeouts.js';
import { runLoad, verifyStored, webhookSet, type Delivery, type LoadReport } from './lib/loadgen.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface ScenarioResult {
  name: string;
  description: string;
  ackDurability: 'local' | 'replicated';
  sent: number;
  acked: number;
  stored: number;
  missing: number;
  duplicated: number;
  /** Seconds from the fault until the system did its job again (see `recoveredWhen`). */
  recoverySeconds: number | null;
  recoveredWhen: string;
  retried: number;
  requests: number;
  answers: Record<string, number>;
  /** 200s answered for requests sent while the fault was on and no copy could be made (must be 0). */
  acksDuringOutage?: number;
  drainSeconds: number;
  doneAt: number;
  passed: boolean;
  notes?: string;
}

interface Context {
  readonly scale: number;
  readonly rate: number;
}

interface Scenario {
  readonly name: string;
  readonly description: string;
  readonly ackDurability?: 'local' | 'replicated';
  readonly stack?: Partial<HaStackOptions>;
  run(stack: HaStack, ctx: Context): Promise<Omit<ScenarioResult, 'name' | 'description' | 'ackDurability' | 'passed'>>;
}

/** Load in the background while `fault` runs; returns the load report and the answer timeline. */
async function underLoad(stack: HaStack, deliveries: Delivery[], opts: { rate: number; copies?: number; shuffle?: boolean; deadlineMs?: number }, fault: (t0: number) => Promise<void>) {
  const timeline: { at: number; status: number }[] = [];
  const t0 = Date.now();
  const load = runLoad({
    url: `${stack.url}/webhooks/whatsapp`, appSecret: stack.secrets.appSecret, deliveries, rate: opts.rate,
    copies: opts.copies, shuffle: opts.shuffle, deadlineMs: opts.deadlineMs ?? 180_000, concurrency: 32,
    onAnswer: (at, status) => timeline.push({ at: t0 + at, status }),
  });
  await fault(t0);
  const report = await load;
  return { report, timeline };
}

async function finish(stack: HaStack, deliveries: Delivery[], report: LoadReport, extra: { recoverySeconds: number | null; recoveredWhen: string; acksDuringOutage?: number; notes?: string }) {
  const wamids = [...new Set(deliveries.filter((d) => d.kind === 'message').map((d) => d.wamid))];
  const v = await verifyStored(stack.directDatabaseUrl, wamids, report.ackedMessages, { timeoutMs: 180_000 });
  return {
    sent: report.messages, acked: report.ackedMessages.size, stored: v.stored, missing: v.missing, duplicated: v.duplicated,
    retried: report.retried, requests: report.requests, answers: { ...report.answers }, drainSeconds: Math.round(v.drainSeconds * 10) / 10, doneAt: v.doneAt,
    ...extra,
    notes: [extra.notes, v.missing ? `missing e.g. ${v.missingSample.join(', ')}` : ''].filter(Boolean).join('; ') || undefined,
  };
}

/** Seconds from `from` to the first 200 answered to a request sent after it. */
function firstOkAfter(timeline: { at: number; status: number }[], from: number): number | null {
  const hit = timeline.find((e) => e.at >= from && e.status === 200);
  return hit ? Math.round((hit.at - from) / 100) / 10 : null;
}

const masterKill = (ackDurability: 'local' | 'replicated'): Scenario => ({
  name: `redis-master-kill${ackDurability === 'local' ? '-local' : ''}`,
  description: `SIGKILL the Redis master under load; Sentinel promotes a replica (ACK_DURABILITY=${ackDurability})`,
  ackDurability,
  async run(stack, ctx) {
    const deliveries = webhookSet({ count: Math.round(ctx.rate * 20 * ctx.scale), phoneNumberId: stack.secrets.phoneNumberId });
    let killedAt = 0;
    const { report, timeline } = await underLoad(stack, deliveries, { rate: ctx.rate }, async () => {
      await sleep(5_000 * ctx.scale);
      const m = await stack.master();
      killedAt = Date.now();
      await stack.redis[m.index]!.kill();
      // The dead master comes back later as a replica, like a restarted pod.
      await sleep(15_000 * ctx.scale);
      await stack.startRedis(m.index);
    });
    // With replicated acks nothing may be answered 200 between the kill and the promotion, unless
    // the promoted replica already had it: the loss check below is the real proof.
    const recovery = firstOkAfter(timeline, killedAt + 50);
    return finish(stack, deliveries, report, { recoverySeconds: recovery, recoveredWhen: 'first webhook answered 200 after the kill' });
  },
});

const postgresStop: Scenario = {
  name: 'postgres-stop-30s',
  description: 'Stop Postgres for 30 s under load, then start it; webhooks keep being acked into Redis, workers retry',
  async run(stack, ctx) {
    const outage = 30_000 * Math.max(ctx.scale, 0.5);
    const deliveries = webhookSet({ count: Math.round(ctx.rate * (outage / 1000 + 15 * ctx.scale)), phoneNumberId: stack.secrets.phoneNumberId });
    let restartedAt = 0;
    const { report } = await underLoad(stack, deliveries, { rate: ctx.rate }, async () => {
      await sleep(5_000 * ctx.scale);
      await stack.postgres.stop();
      await sleep(outage);
      await stack.startPostgres();
      restartedAt = Date.now();
    });
    const result = await finish(stack, deliveries, report, { recoverySeconds: null, recoveredWhen: 'every acked message stored, counted from Postgres coming back' });
    result.recoverySeconds = Math.round((result.doneAt - restartedAt) / 100) / 10;
    return result;
  },
};

const pgbouncerRestart: Scenario = {
  name: 'pgbouncer-restart',
  description: 'Restart PgBouncer under load',
  async run(stack, ctx) {
    const deliveries = webhookSet({ count: Math.round(ctx.rate * 15 * ctx.scale), phoneNumberId: stack.secrets.phoneNumberId });
    const { report } = await underLoad(stack, deliveries, { rate: ctx.rate }, async () => {
      await sleep(5_000 * ctx.scale);
      await stack.pgbouncer.kill();
      await sleep(2_000);
      await stack.startPgBouncer();
    });
    return finish(stack, deliveries, report, { recoverySeconds: null, recoveredWhen: 'not measured (webhooks never depend on PgBouncer)' });
  },
};

const processKills: Scenario = {
  name: 'process-kills',
  description: 'SIGKILL a web and a worker process under load, SIGTERM the other web (graceful), then start them again',
  async run(stack, ctx) {
    const deliveries = webhookSet({ count: Math.round(ctx.rate * 20 * ctx.scale), phoneNumberId: stack.secrets.phoneNumberId });
    let faultAt = 0;
    const { report, timeline } = await underLoad(stack, deliveries, { rate: ctx.rate }, async () => {
      await sleep(5_000 * ctx.scale);
      faultAt = Date.now();
      await Promise.all([stack.webs[0]!.kill(), stack.workers[0]!.kill()]);
      await sleep(1_000);
      await stack.webs[0]!.start();
      await stack.webs[1]!.stop();
      await sleep(1_000);
      await Promise.all([stack.webs[1]!.start(), stack.workers[0]!.start()]);
    });
    const non200 = timeline.filter((e) => e.at >= faultAt && e.status !== 200).length;
    return finish(stack, deliveries, report, { recoverySeconds: firstOkAfter(timeline, faultAt), recoveredWhen: 'first webhook answered 200 after the kills', notes: `${non200} non-200 answers after the kills (redelivered)` });
  },
};

const duplicates: Scenario = {
  name: 'duplicates-shuffled',
  description: 'Every webhook delivered 3 times in shuffled order, statuses before their messages',
  async run(stack, ctx) {
    const deliveries = webhookSet({ count: Math.round(ctx.rate * 5 * ctx.scale), phoneNumberId: stack.secrets.phoneNumberId, statuses: true });
    const { report } = await underLoad(stack, deliveries, { rate: ctx.rate, copies: 3, shuffle: true }, async () => undefined);
    const result = await finish(stack, deliveries, report, { recoverySeconds: 0, recoveredWhen: 'no fault' });
    return result;
  },
};

const historyKill: Scenario = {
  name: 'history-10k-worker-kill',
  description: 'A 10,000-message coexistence history (40 chunks) with a worker SIGKILLed halfway, then started again',
  async run(stack) {
    const chunks = historyChunks({ phoneNumberId: stack.secrets.phoneNumberId, messages: 10_000, conversations: 200, perChunk: 250 });
    const deliveries: Delivery[] = chunks.map((c, i) => ({ wamid: `chunk-${i}`, kind: 'status', body: c.body }));
    const prefix = 'wamid.HIST';
    const count = async () => {
      const c = new pg.Client({ connectionString: stack.directDatabaseUrl });
      await c.connect();
      try {
        return Number((await c.query(`SELECT count(*) AS n FROM messages WHERE wamid LIKE '${prefix}%'`)).rows[0].n);
      } finally {
        await c.end();
      }
    };
    let killedAt = 0;
    const { report } = await underLoad(stack, deliveries, { rate: 50 }, async () => {
      const deadline = Date.now() + 120_000;
      while (Date.now() < deadline && (await count()) < 3_000) await sleep(50);
      killedAt = await count();
      await Promise.all(stack.workers.map((w) => w.kill()));
      await sleep(1_000);
      await Promise.all(stack.workers.map((w) => w.start()));
    });
    const deadline = Date.now() + 180_000;
    let stored = 0;
    while (Date.now() < deadline && (stored = await count()) < 10_000) await sleep(200);
    const c = new pg.Client({ connectionString: stack.directDatabaseUrl });
    await c.connect();
    const dup = Number((await c.query(`SELECT count(*) AS n FROM (SELECT wamid FROM messages WHERE wamid LIKE '${prefix}%' GROUP BY wamid HAVING count(*) > 1) d`)).rows[0].n);
    await c.end();
    const ackedChunks = chunks.length - report.unacked;
    return {
      sent: 10_000, acked: ackedChunks === chunks.length ? 10_000 : Math.round((10_000 * ackedChunks) / chunks.length), stored, missing: Math.max(0, 10_000 - stored), duplicated: dup,
      retried: report.retried, requests: report.requests, answers: { ...report.answers }, drainSeconds: 0, doneAt: Date.now(),
      recoverySeconds: null, recoveredWhen: 'not measured (history)', notes: `${ackedChunks}/${chunks.length} chunks acked; workers killed with ${killedAt} rows stored`,
    };
  },
};

const saturation: Scenario = {
  name: 'saturation-60s',
  description: 'Ingest faster than the workers for 60 s (1 slow worker); the queue grows, memory stays bounded, the backlog drains',
  stack: { workers: 1, env: { WORKER_CONCURRENCY: '2' } },
  async run(stack, ctx) {
    const seconds = 60 * ctx.scale;
    const rate = ctx.rate * 3;
    const deliveries = webhookSet({ count: Math.round(rate * seconds), phoneNumberId: stack.secrets.phoneNumberId });
    let maxRss = 0;
    let stop = false;
    const sampler = (async () => {
      while (!stop) {
        for (const p of [...stack.webs, ...stack.workers]) {
          try {
            const status = fs.readFileSync(`/proc/${p.pid}/status`, 'utf8');
            const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
            maxRss = Math.max(maxRss, kb * 1024);
          } catch {
            // process gone between samples
          }
        }
        await sleep(500);
      }
    })();
    const { report } = await underLoad(stack, deliveries, { rate }, async () => undefined);
    const endOfLoad = Date.now();
    const result = await finish(stack, deliveries, report, { recoverySeconds: null, recoveredWhen: 'backlog drained, counted from the end of the load' });
    stop = true;
    await sampler;
    result.recoverySeconds = Math.round((result.doneAt - endOfLoad) / 100) / 10;
    result.notes = [result.notes, `max service RSS ${(maxRss / 2 ** 20).toFixed(0)} MiB`].filter(Boolean).join('; ');
    return result;
  },
};

const graphTimeoutsScenario: Scenario = {
  name: 'graph-timeouts',
  description: 'Sends at 40/s while the Graph API simulator leaves 10% of accepted sends unanswered (timeouts) and a worker is SIGKILLed: each message accepted once at the simulator, none left pending',
  stack: { env: GRAPH_TIMEOUTS_ENV },
  run: (stack, ctx) => graphTimeouts(stack, ctx),
};

export const SCENARIOS: Scenario[] = [masterKill('replicated'), masterKill('local'), postgresStop, pgbouncerRestart, processKills, duplicates, historyKill, saturation, graphTimeoutsScenario];

export async function runScenario(s: Scenario, ctx: Context): Promise<ScenarioResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `wa-chaos-${s.name}-`));
  const stack = await startHaStack({ dir, ackDurability: s.ackDurability ?? 'replicated', ...s.stack });
  try {
    const r = await s.run(stack, ctx);
    const lossless = s.ackDurability === 'local' ? true : r.missing === 0;
    return { name: s.name, description: s.description, ackDurability: s.ackDurability ?? 'replicated', ...r, passed: lossless && r.duplicated === 0 && r.acked > 0 };
  } finally {
    await stack.stop().catch(() => undefined);
    if (!process.env.CHAOS_KEEP) fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const only = process.env.CHAOS_ONLY?.split(',').map((s) => s.trim()).filter(Boolean);
  const ctx: Context = { scale: Number(process.env.CHAOS_SCALE ?? 1), rate: Number(process.env.CHAOS_RATE ?? 300) };
  const results: ScenarioResult[] = [];
  for (const s of SCENARIOS.filter((x) => !only || only.includes(x.name))) {
    process.stderr.write(`chaos: ${s.name}: ${s.description}\n`);
    const r = await runScenario(s, ctx);
    results.push(r);
    process.stderr.write(`chaos: ${r.name}: sent ${r.sent}, acked ${r.acked}, stored ${r.stored}, missing ${r.missing}, duplicated ${r.duplicated}, recovery ${r.recoverySeconds ?? '-'} s, retried ${r.retried} ${r.passed ? 'PASS' : 'FAIL'}\n`);
  }
  const out = path.join(ROOT, 'bench', 'results', 'chaos.json');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ generatedAt: new Date().toISOString(), host: { cpus: os.availableParallelism() }, scenarios: results }, null, 2) + '\n');
  process.stderr.write(`chaos: wrote ${path.relative(process.cwd(), out)}\n`);
  if (results.some((r) => !r.passed)) process.exitCode = 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) await main();
