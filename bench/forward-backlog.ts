// What forwarding costs Postgres per event as a function of the backlog, without the full router
// bench: forward_events filled with N pending events over 200 conversations of 2 areas (each
// conversation assigned to one), then drained by the real worker role (its forwarder) into a fast
// local receiver. Per half of the drain: CPU-seconds of Postgres and of the worker per event, the
// statements per event, the table's updates (HOT or not) and dead rows, the index pages read per
// event; and EXPLAIN (ANALYZE, BUFFERS) of the claim at the start and half-way (in a transaction
// rolled back, its backend's CPU left out of the figures).
//   npm run -s build && npx tsx bench/forward-backlog.ts        (BENCH_BACKLOGS=1000,20000 by default)
// BENCH_BACKLOG_PLANS=1 prints the claim's whole plans, not only their totals.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type pg from 'pg';
import { postgresCpuSeconds, processCpuSeconds } from './lib/cost.js';
import { startBenchReceiver, type BenchReceiver } from './lib/receiver.js';
import { ROOT, settle, startBenchStack, startRole, type BenchStack } from './lib/stack.js';
import { sleep } from '../scripts/stack/proc.js';

// The statements per event are the point here: pg_stat_statements on.
process.env.BENCH_PG_STATEMENTS ??= '1';
const BACKLOGS = (process.env.BENCH_BACKLOGS ?? '1000,20000').split(',').map(Number);
const CONVERSATIONS = 200;
const FULL_PLANS = process.env.BENCH_BACKLOG_PLANS === '1';
/** BENCH_BACKLOG_FEED=<seconds>: events keep arriving for that long (the timed stretch) instead of a drain. */
const FEED_SECONDS = Number(process.env.BENCH_BACKLOG_FEED ?? 0);
const FEED_RATE = Number(process.env.BENCH_BACKLOG_FEED_RATE ?? 2_000);
const FEED_BATCH = 20;
// The claim as the service under test runs it (BENCH_SERVICE_DIST: another build, for an A/B run);
// a build that does not export it gets no plans.
const CLAIM_SQL = ((await import(pathToFileURL(path.join(process.env.BENCH_SERVICE_DIST ? path.resolve(process.env.BENCH_SERVICE_DIST) : path.join(ROOT, 'service', 'dist'), 'router', 'forwarding', 'outbox.js')).href)) as { CLAIM_SQL?: string }).CLAIM_SQL;

interface Receiver extends BenchReceiver {
  /** Distinct webhook-ids received. */
  readonly seen: Set<string>;
}

async function startReceiver(): Promise<Receiver> {
  const seen = new Set<string>();
  const server = await startBenchReceiver((req) => seen.add(String(req.headers['webhook-id'])));
  return { ...server, seen };
}

interface Snapshot {
  readonly pgCpu: number;
  readonly workerCpu: number;
  readonly delivered: number;
  readonly tables: Map<string, { ins: number; upd: number; hot: number; dead: number; live: number; autovacuums: number }>;
  readonly indexes: Map<string, number>;
  readonly statements: Map<string, { calls: number; ms: number; rows: number; blks: number }>;
}

async function snapshot(pool: pg.Pool, stack: BenchStack, workerPid: number, delivered: number): Promise<Snapshot> {
  const pgCpu = postgresCpuSeconds(stack.postgres.dataDir);
  const workerCpu = processCpuSeconds(workerPid);
  const { rows: t } = await pool.query<{ relname: string; n_tup_ins: string; n_tup_upd: string; n_tup_hot_upd: string; n_dead_tup: string; n_live_tup: string; autovacuum_count: string }>(
    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_dead_tup, n_live_tup, autovacuum_count FROM pg_stat_user_tables WHERE relname IN ('forward_events', 'forward_attempts')",
  );
  const { rows: i } = await pool.query<{ indexrelname: string; blks: string }>(
    "SELECT indexrelname, (idx_blks_hit + idx_blks_read)::text AS blks FROM pg_statio_user_indexes WHERE relname IN ('forward_events', 'forward_attempts')",
  );
  const { rows: s } = await pool.query<{ query: string; calls: string; ms: number; rows: string; blks: string }>(
    "SELECT query, calls, total_exec_time AS ms, rows, shared_blks_hit + shared_blks_read AS blks FROM pg_stat_statements WHERE query ~ 'forward_(events|attempts)' AND query !~* '^\\s*(EXPLAIN|PREPARE|SELECT relname|SELECT indexrelname|SELECT query)'",
  );
  return {
    pgCpu,
    workerCpu,
    delivered,
    tables: new Map(t.map((r) => [r.relname, { ins: Number(r.n_tup_ins), upd: Number(r.n_tup_upd), hot: Number(r.n_tup_hot_upd), dead: Number(r.n_dead_tup), live: Number(r.n_live_tup), autovacuums: Number(r.autovacuum_count) }])),
    indexes: new Map(i.map((r) => [r.indexrelname, Number(r.blks)])),
    statements: new Map(s.map((r) => [r.query.replace(/\s+/g, ' '), { calls: Number(r.calls), ms: r.ms, rows: Number(r.rows), blks: Number(r.blks) }])),
  };
}

/** What one stretch of the drain cost per delivered event; `excludedPgCpu`: the plans' own backend. */
function report(label: string, a: Snapshot, b: Snapshot, excludedPgCpu: number): { pgMsPerEvent: number } {
  const events = b.delivered - a.delivered;
  const per = (x: number) => x / Math.max(1, events);
  const pgMs = per(b.pgCpu - a.pgCpu - excludedPgCpu) * 1000;
  console.log(`  ${label}: ${events} events; CPU ms per event: postgres ${pgMs.toFixed(3)}, worker ${(per(b.workerCpu - a.workerCpu) * 1000).toFixed(3)}`);
  for (const [name, t1] of b.tables) {
    const t0 = a.tables.get(name)!;
    const upd = t1.upd - t0.upd;
    console.log(`    ${name}: per event ${per(t1.ins - t0.ins).toFixed(2)} inserts, ${per(upd).toFixed(2)} updates (${upd ? Math.round(((t1.hot - t0.hot) / upd) * 100) : 0}% HOT); dead rows ${t0.dead} → ${t1.dead}, live ${t1.live}, autovacuums ${t1.autovacuums - t0.autovacuums}`);
  }
  console.log(`    index pages read per event: ${[...b.indexes].map(([k, v]) => [k, per(v - (a.indexes.get(k) ?? 0))] as const).filter(([, v]) => v >= 0.005).map(([k, v]) => `${k.replace(/^forward_/, '')} ${v.toFixed(2)}`).join(', ')}`);
  const rows = [...b.statements].map(([q, s1]) => {
    const s0 = a.statements.get(q) ?? { calls: 0, ms: 0, rows: 0, blks: 0 };
    return { q, calls: s1.calls - s0.calls, ms: s1.ms - s0.ms, rows: s1.rows - s0.rows, blks: s1.blks - s0.blks };
  }).filter((r) => r.calls > 0).sort((x, y) => y.ms - x.ms);
  // What the forwarding's statements read per event: buffers, unlike CPU, a loaded host does not change.
  const forwarding = rows.filter((r) => !r.q.startsWith(FEEDER));
  console.log(`    forwarding statements per event: ${per(forwarding.reduce((x, r) => x + r.calls, 0)).toFixed(3)}, buffers ${per(forwarding.reduce((x, r) => x + r.blks, 0)).toFixed(1)}`);
  console.log(`    statements (calls, buffers, µs executing, rows per event; of ${b.statements.size} seen):`);
  for (const r of rows.slice(0, 8)) console.log(`      ${per(r.calls).toFixed(3)}  ${per(r.blks).toFixed(1).padStart(6)}  ${(per(r.ms) * 1000).toFixed(1).padStart(7)}  ${per(r.rows).toFixed(2).padStart(6)}  ${r.q.slice(0, 80)}`);
  return { pgMsPerEvent: pgMs };
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) of the worker's claim as it runs it (the text it prepared, a generic
 * plan), with a worker's usual parameters, rolled back: what it would lease stays pending.
 * Returns the CPU its backend used, to be left out of the drain's figures.
 */
async function explainClaim(pool: pg.Pool, label: string): Promise<number> {
  if (CLAIM_SQL === undefined) return 0;
  const c = await pool.connect();
  try {
    const { rows: pidRow } = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const cpu0 = processCpuSeconds(pidRow[0]!.pid);
    await c.query('BEGIN');
    await c.query('SET LOCAL plan_cache_mode = force_generic_plan');
    await c.query(`PREPARE backlog_claim AS ${CLAIM_SQL}`);
    // queues, settleMs, skipAreas, capAreas, caps, defaultCap, maxOrderWaitMs, leaseMs, runLength, lenAreas, lens, cursorAreas, cursors
    const params = ['200', '30', "'{}'", "'{}'", "'{}'", '20', '10000', '30000', '50', "'{}'", "'{}'", "'{}'", "'{}'"];
    const used = Math.max(...[...CLAIM_SQL.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
    const { rows } = await c.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) EXECUTE backlog_claim(${params.slice(0, used).join(', ')})`);
    await c.query('ROLLBACK');
    await c.query('DEALLOCATE backlog_claim');
    const cpu = processCpuSeconds(pidRow[0]!.pid) - cpu0;
    const plan = rows.map((r) => r['QUERY PLAN']);
    if (FULL_PLANS) {
      console.log(`  plan (${label}):`);
      for (const line of plan) console.log(`    ${line}`);
    } else {
      // The claim's totals and its scans (the leaves: what each read, in how many loops).
      const scans = plan.flatMap((line, i) => {
        if (!/(Index|Index Only|Seq|Bitmap Heap) Scan/.test(line)) return [];
        // The node's own lines: up to its first child or the next node.
        const end = plan.findIndex((l, j) => j > i && /->/.test(l));
        const next = plan.slice(i + 1, end === -1 ? undefined : end);
        const buffers = /Buffers: (.*)/.exec(next.find((l) => /Buffers/.test(l)) ?? '')?.[1] ?? 'no buffers';
        const removed = next.find((l) => /Rows Removed/.test(l))?.trim();
        return [`${line.trim().replace(/\(cost=[^)]*\)\s*/, '').replace(/^->\s*/, '')}; ${buffers}${removed ? '; ' + removed : ''}`];
      });
      console.log(`  plan (${label}): ${plan.filter((l) => /Execution Time|Planning Time/.test(l)).map((l) => l.trim()).join(', ')}; ${plan.find((l) => /^\s*Buffers/.test(l))?.trim() ?? ''}`);
      for (const sc of scans) console.log(`    ${sc.slice(0, 220)}`);
    }
    return cpu;
  } finally {
    c.release();
  }
}

const FEEDER = 'INSERT INTO forward_events (area_id, conversation_id, type, data) SELECT';

/** Inserts events at FEED_RATE until stopped; returns how many and its backend's CPU-seconds. */
function feed(pool: pg.Pool, areas: number[], t0: number): { stop(): Promise<{ events: number; cpu: number }> } {
  let stopping = false;
  const run = (async () => {
    const c = await pool.connect();
    try {
      const { rows } = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const cpu0 = processCpuSeconds(rows[0]!.pid);
      let events = 0;
      while (!stopping) {
        const due = t0 + (events / FEED_RATE) * 1000;
        const wait = due - performance.now();
        if (wait > 1) await sleep(wait);
        await c.query(
          `${FEEDER} CASE WHEN x.c % 2 = 0 THEN $1::bigint ELSE $2::bigint END, x.c, 'conversation.assigned', jsonb_build_object('n', $3::int + i)
           FROM generate_series(1, $4::int) i, LATERAL (SELECT 1 + (($3::int + i) % ${CONVERSATIONS}) AS c) x ORDER BY i`,
          [areas[0], areas[1], events, FEED_BATCH],
        );
        events += FEED_BATCH;
      }
      return { events, cpu: processCpuSeconds(rows[0]!.pid) - cpu0 };
    } finally {
      c.release();
    }
  })();
  return {
    stop: async () => {
      stopping = true;
      return run;
    },
  };
}

async function drain(stack: BenchStack, n: number): Promise<{ first: number; second: number; rate: number }> {
  const pool = stack.pool;
  const receiver = await startReceiver();
  // A fresh outbox (a new file: no dead rows, no autovacuum history) and two areas, disabled
  // while the backlog is written and the worker starts, so the timing starts with every event pending.
  await pool.query('TRUNCATE forward_attempts, forward_events');
  await pool.query('DELETE FROM areas');
  const { rows: areas } = await pool.query<{ id: string }>(
    "INSERT INTO areas (name, webhook_url, disabled_at) VALUES ('A', $1, now()), ('B', $1, now()) RETURNING id",
    [receiver.url],
  );
  const [a, b] = areas.map((r) => Number(r.id));
  await pool.query("INSERT INTO area_secrets (area_id, secret) SELECT id, 'whsec_' || encode(decode(md5(random()::text), 'hex'), 'base64') FROM areas");
  // Event i of conversation c, in the order a store would have queued them: the conversation's
  // events interleaved with the others', as live traffic comes.
  await pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data, sort_at, sort_seq, created_at)
     SELECT CASE WHEN c % 2 = 0 THEN $1::bigint ELSE $2::bigint END, c, 'conversation.assigned', jsonb_build_object('n', i),
            now() - interval '10 minutes' + i * interval '1 ms', now() - interval '10 minutes' + i * interval '1 ms', now() - interval '10 minutes'
     FROM generate_series(1, $3::int) i, LATERAL (SELECT 1 + (i % ${CONVERSATIONS}) AS c) x ORDER BY i`,
    [a, b, n],
  );
  await settle(stack);
  const env = stack.serviceEnv({ QUEUE_PREFIX: `bench-backlog-${n}`, FORWARD_ALLOW_PRIVATE: 'true', DATABASE_PREPARED_STATEMENTS: 'true' });
  const worker = await startRole('worker', env);
  try {
    await sleep(1_000);
    const pid = worker.child.pid!;
    let excluded = 0;
    const s0 = await snapshot(pool, stack, pid, 0);
    await pool.query('UPDATE areas SET disabled_at = NULL');
    const t0 = performance.now();
    // Fed: new events keep coming (FEED_RATE per second, in stores of FEED_BATCH over every
    // conversation) for FEED_SECONDS while the backlog drains, as webhooks do in the router
    // bench; its inserts' CPU (their own backend) is left out of the figures.
    const feeding = FEED_SECONDS > 0 ? feed(pool, [a!, b!], t0) : undefined;
    const done = () => (feeding ? performance.now() - t0 >= FEED_SECONDS * 1000 : receiver.seen.size >= n);
    const halfway = () => (feeding ? performance.now() - t0 >= (FEED_SECONDS * 1000) / 2 : receiver.seen.size >= n / 2);
    // The first plan once the worker's first claim is in (its prepared statement planned).
    let planned = false;
    let half: Snapshot | undefined;
    const deadline = Date.now() + 600_000;
    while (!done() && Date.now() < deadline) {
      await sleep(20);
      if (!planned && receiver.seen.size > 0) {
        planned = true;
        excluded += await explainClaim(pool, `start, ${n - receiver.seen.size} pending`);
      }
      if (!half && halfway()) {
        half = await snapshot(pool, stack, pid, receiver.seen.size);
        const cpu = await explainClaim(pool, `half-way, ${receiver.seen.size} delivered`);
        excluded += cpu;
        half = { ...half, pgCpu: half.pgCpu + cpu };
      }
    }
    const fed = feeding ? await feeding.stop() : { events: 0, cpu: 0 };
    const seconds = (performance.now() - t0) / 1000;
    if (!done()) throw new Error(`only ${receiver.seen.size} of ${n} events delivered in 10 minutes`);
    // Outcomes of the last runs are recorded a moment after their deliveries.
    if (!feeding) await sleep(500);
    const s2 = await snapshot(pool, stack, pid, receiver.seen.size);
    const { rows: left } = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM forward_events WHERE status = 'pending'");
    console.log(`backlog ${n}${feeding ? ` fed ${fed.events} more over ${FEED_SECONDS} s` : ''}: ${receiver.seen.size} delivered in ${seconds.toFixed(1)} s (${Math.round(receiver.seen.size / seconds)} events/s wall-clock, machine-dependent), ${left[0]!.n} left pending`);
    // The feeder's CPU, split between the halves by the events delivered (its rate is steady).
    const feedShare = fed.cpu * (half!.delivered / Math.max(1, receiver.seen.size));
    const first = report('first half', s0, half!, excluded + feedShare);
    const second = report('second half', half!, s2, fed.cpu - feedShare);
    report('whole run', s0, s2, excluded + fed.cpu);
    return { first: first.pgMsPerEvent, second: second.pgMsPerEvent, rate: receiver.seen.size / seconds };
  } finally {
    await worker.stop();
    await receiver.close();
  }
}

async function main(): Promise<void> {
  const stack = await startBenchStack();
  try {
    const out: string[] = [];
    for (const n of BACKLOGS) {
      const r = await drain(stack, n);
      out.push(`backlog ${n}${FEED_SECONDS ? ` fed at ${FEED_RATE}/s` : ''}: postgres CPU ms per event ${r.first.toFixed(3)} (first half), ${r.second.toFixed(3)} (second half); ${Math.round(r.rate)} events/s`);
    }
    console.log(out.join('\n'));
    if (process.env.BENCH_BACKLOG_OUT) fs.writeFileSync(process.env.BENCH_BACKLOG_OUT, out.join('\n') + '\n');
  } finally {
    await stack.stop();
  }
}

await main();
