// The inbox at the size of a busy business: GET /v1/conversations?limit=50 (first page, a deep
// cursor page, unread=true, q= when the API has it; the first pages of a token limited to two of
// five areas, which 60% of the conversations are assigned to) and the messages page of a
// 10,000-message conversation, on 100,000 conversations and 5,000,000 messages (bench/lib/inbox-dataset.ts),
// 20 concurrent clients over keep-alive. Baseline, same run, same concurrency: the very SQL the
// service sent for that page (read from Postgres's statement log), run by `pg` from here (rows read
// as arrays of text, the cheapest way a client can take them), in short
// slices alternating with the API's so that both see the same machine; the ratio is what HTTP,
// auth (a scoped token, as agents use: checked in Postgres on every request), validation and JSON
// add to the query. The service runs with DATABASE_PREPARED_STATEMENTS=true (as the presets do);
// the replay runs what it prepared by name too. Beside the latencies, CPU per request of the web
// process and of Postgres (utime + stime over a fixed number of requests), which a busy machine
// does not distort. Each variant also gets a paced row (`…_paced_200rps`): an open loop at a fixed
// rate well below saturation, where the closed loop's p95 is mostly 19 other clients' queue.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { Agent, request } from 'undici';
import { sleep } from '../scripts/stack/proc.js';
import { childrenCpuDelta, childrenCpuSeconds, cpuSeconds } from './lib/cpu.js';
import { startInboxDataset, DATASET } from './lib/inbox-dataset.js';
import { result, type BenchResult } from './lib/results.js';
import { startRole, type BenchStack, type Proc } from './lib/stack.js';

const API_TOKEN = 'bench-api-token-0123456789';
const CONCURRENCY = 20;
/** Each variant stops at whichever comes first. */
const MAX_REQUESTS = 4_000;
const TARGET_MS = 10;
/** Matches nobody: the probe tells an API that filters on `q` from one that ignores it. */
const NO_MATCH = 'zzqqxx-nobody';
const SEARCH = 'Barbosa';
/** How deep the deep page starts (rows before it). */
const DEEP = 90_000;
/** Requests per side of each variant's CPU measurement. */
const CPU_REQUESTS = 1_000;
/**
 * The paced row: CONCURRENCY clients at PACED_PER_CLIENT requests a second each, well below what
 * the closed loop saturates at, so its p95 is a page's latency rather than the queue's.
 */
const PACED_PER_CLIENT = 10;
const PACED_RATE = CONCURRENCY * PACED_PER_CLIENT;
/** How long each side of the paced pair runs before the other takes over. */
const PACED_SLICE_MS = 1_000;
/**
 * How long a paced slice waits for its last answers after its last scheduled start: a request
 * still open then counts as failed (and its late answer is ignored), so a stuck request cannot hang the run.
 */
const PACED_DRAIN_MS = 5_000;

export interface Stats {
  readonly p50: number;
  readonly p95: number;
  readonly requests: number;
  readonly perSecond: number;
  readonly errors: number;
}

const pct = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]! : NaN);

const stats = (latencies: number[], errors: number, elapsed: number): Stats => {
  latencies.sort((a, b) => a - b);
  return { p50: pct(latencies, 0.5), p95: pct(latencies, 0.95), requests: latencies.length, perSecond: latencies.length / elapsed, errors };
};

/** How long each side runs before the other takes over: short, so both see the same machine. */
const SLICE_MS = 500;

/**
 * The API and its baseline in alternating slices of SLICE_MS (API, SQL, API, ...), `concurrency`
 * loops each, until each side has had `seconds` of slices or `max` calls: a busy machine's load
 * changes from second to second, and two phases run one after the other would each see a
 * different machine. A short warm-up of both first.
 */
async function measurePair(sides: { api: () => Promise<boolean>; sql: () => Promise<boolean> }, seconds: number, concurrency = CONCURRENCY, max = MAX_REQUESTS): Promise<{ api: Stats; sql: Stats }> {
  for (let i = 0; i < 20; i++) {
    await sides.api();
    await sides.sql();
  }
  const runs = { api: { latencies: [] as number[], errors: 0, ms: 0 }, sql: { latencies: [] as number[], errors: 0, ms: 0 } };
  const slices = Math.max(1, Math.round((seconds * 1000) / SLICE_MS));
  for (let i = 0; i < slices; i++) {
    for (const side of ['api', 'sql'] as const) {
      const run = runs[side];
      const once = sides[side];
      const t0 = performance.now();
      const deadline = t0 + SLICE_MS;
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (run.latencies.length + run.errors < max && performance.now() < deadline) {
          const s = performance.now();
          const ok = await once().catch(() => false);
          if (ok) run.latencies.push(performance.now() - s);
          else run.errors++;
        }
      }));
      run.ms += performance.now() - t0;
    }
    if (runs.api.latencies.length + runs.api.errors >= max && runs.sql.latencies.length + runs.sql.errors >= max) break;
  }
  return { api: stats(runs.api.latencies, runs.api.errors, runs.api.ms / 1000), sql: stats(runs.sql.latencies, runs.sql.errors, runs.sql.ms / 1000) };
}

/**
 * Open loop at PACED_RATE requests a second: each request starts on its schedule (every client
 * fires every 1/PACED_PER_CLIENT s, the clients staggered evenly) whether or not earlier ones
 * have answered, and its latency counts from the scheduled start, so a stall shows in full
 * instead of slowing the load down (the closed loop's coordinated omission). The API and its
 * baseline in alternating PACED_SLICE_MS slices, `seconds` of slices each.
 */
export async function measurePaced(sides: { api: () => Promise<boolean>; sql: () => Promise<boolean> }, seconds: number): Promise<{ api: Stats; sql: Stats }> {
  const runs = { api: { latencies: [] as number[], errors: 0, ms: 0 }, sql: { latencies: [] as number[], errors: 0, ms: 0 } };
  const perSlice = Math.round((PACED_RATE * PACED_SLICE_MS) / 1000);
  const slices = Math.max(1, Math.round((seconds * 1000) / PACED_SLICE_MS));
  for (let i = 0; i < slices; i++) {
    for (const side of ['api', 'sql'] as const) {
      const run = runs[side];
      const once = sides[side];
      const t0 = performance.now();
      const inFlight: Promise<void>[] = [];
      const open = new Set<number>();
      for (let k = 0; k < perSlice; k++) {
        const at = t0 + (k * 1000) / PACED_RATE;
        const wait = at - performance.now();
        if (wait > 0) await sleep(wait);
        open.add(k);
        inFlight.push(once().catch(() => false).then((ok) => {
          if (!open.delete(k)) return;
          if (ok) run.latencies.push(performance.now() - at);
          else run.errors++;
        }));
      }
      let drained: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(inFlight), new Promise((resolve) => { drained = setTimeout(resolve, PACED_DRAIN_MS); })]);
      clearTimeout(drained);
      run.errors += open.size;
      open.clear();
      run.ms += performance.now() - t0;
    }
  }
  return { api: stats(runs.api.latencies, runs.api.errors, runs.api.ms / 1000), sql: stats(runs.sql.latencies, runs.sql.errors, runs.sql.ms / 1000) };
}

/**
 * The replay reads every value as the text Postgres sent, in arrays (no parsing into Dates or
 * numbers, no object per row): the least a client can do with the rows, as the service does
 * before writing its JSON from them.
 */
const AS_SENT = { getTypeParser: () => (text: string) => text } as unknown as pg.CustomTypesConfig;

interface Statement {
  /** The prepared statement's name when the service ran it by one: the replay does the same (planned once per connection). */
  readonly name?: string;
  readonly text: string;
  readonly values: (string | null)[];
}

/**
 * The statements Postgres logged since `offset` (log_min_duration_statement = 0): each execute
 * with its parameters. Only the reads of the inbox (the web process also runs its own checks).
 */
function loggedStatements(logFile: string, offset: number): Statement[] {
  const text = fs.readFileSync(logFile, 'utf8').slice(offset);
  const entries: string[] = [];
  for (const line of text.split('\n')) {
    if (/^\d{4}-\d\d-\d\d /.test(line)) entries.push(line);
    else if (entries.length && line.startsWith('\t')) entries[entries.length - 1] += '\n' + line.slice(1);
  }
  const out: Statement[] = [];
  for (let i = 0; i < entries.length; i++) {
    const m = /LOG: {2}duration: [\d.]+ ms {2}(?:execute ([^:]*)|statement): ([\s\S]*)$/.exec(entries[i]!);
    if (!m) continue;
    const values: (string | null)[] = [];
    // Its parameters follow as a DETAIL of the same backend (other backends may log in between).
    const pid = /\[(\d+)\]/.exec(entries[i]!)?.[1];
    const detail = entries.slice(i + 1).find((e) => /\[(\d+)\]/.exec(e)?.[1] === pid);
    const params = detail && /DETAIL: {2}parameters: ([\s\S]*)$/i.exec(detail);
    if (params) {
      for (const p of params[1]!.matchAll(/\$(\d+) = (NULL|'((?:[^']|'')*)')/g)) values[Number(p[1]) - 1] = p[2] === 'NULL' ? null : p[3]!.replace(/''/g, "'");
    }
    const sql = m[2]!.trim();
    // `<unnamed>`: a statement run through the extended protocol without a name.
    const name = m[1] && m[1] !== '<unnamed>' ? `bench_${m[1]}` : undefined;
    if (/^(SELECT|WITH)\b/i.test(sql) && /\b(conversations|messages)\b/.test(sql)) out.push({ ...(name ? { name } : {}), text: sql, values });
  }
  return out;
}

interface CpuPerRequest {
  /** ms of CPU per request of the calling side (the web process, or this process's pg client). */
  readonly caller: number;
  /** ms of CPU per request of every Postgres process. */
  readonly postgres: number;
}

/** CPU_REQUESTS calls of `once` at CONCURRENCY, and the CPU the caller's processes and Postgres spent on them. */
async function cpuPerRequest(once: () => Promise<boolean>, callerPids: number[], postmaster: number): Promise<CpuPerRequest> {
  const callerCpu = () => callerPids.reduce((s, pid) => s + cpuSeconds(pid), 0);
  const caller0 = callerCpu();
  const pg0 = childrenCpuSeconds(postmaster);
  let left = CPU_REQUESTS;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (left-- > 0) await once();
  }));
  const postgres = childrenCpuDelta(pg0, childrenCpuSeconds(postmaster));
  return { caller: ((callerCpu() - caller0) / CPU_REQUESTS) * 1000, postgres: (postgres / CPU_REQUESTS) * 1000 };
}

const cpuText = (c: CpuPerRequest, caller: string) => `${caller} ${c.caller.toFixed(3)} + Postgres ${c.postgres.toFixed(3)} = ${(c.caller + c.postgres).toFixed(3)} ms`;

export async function inboxBench(stack: BenchStack, seconds: number): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const log = (s: string) => console.log(`  inbox: ${s}`);
  const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');
  const ds = await startInboxDataset(stack, path.join(stack.dir, 'inbox-postgres'), log);
  log(`dataset ready: built in ${ds.buildSeconds.toFixed(1)} s (0 = cached), started from the cache in ${ds.startSeconds.toFixed(1)} s`);
  const env = stack.serviceEnv({ DATABASE_URL: ds.postgres.url, QUEUE_PREFIX: 'bench-inbox', DB_POOL_MAX: String(CONCURRENCY), DATABASE_PREPARED_STATEMENTS: 'true' });
  log('the web process runs with DATABASE_PREPARED_STATEMENTS=true (named prepared statements, as the presets set it); the replay runs them by name too');
  const logFile = path.join(stack.dir, 'inbox-postgres', 'postgres.log');
  const admin = new pg.Client({ connectionString: ds.postgres.url });
  await admin.connect();
  const pool = new pg.Pool({ connectionString: ds.postgres.url, max: CONCURRENCY });
  pool.on('error', () => undefined);
  const agent = new Agent({ connections: CONCURRENCY, keepAliveTimeout: 30_000 });
  let web: Proc | undefined;
  try {
    // On the run's copy of the dataset (the cache stays as built): five areas, 60% of the
    // conversations assigned over them, as the router leaves a busy inbox.
    await admin.query(`INSERT INTO areas (name, webhook_url) SELECT 'bench area ' || g, 'http://127.0.0.1:9/' || g FROM generate_series(1, 5) g WHERE NOT EXISTS (SELECT 1 FROM areas)`);
    const areaIds = (await admin.query<{ id: string }>('SELECT id FROM areas ORDER BY id LIMIT 5')).rows.map((r) => Number(r.id));
    await admin.query(`INSERT INTO conversation_routes (conversation_id, state, area_id, assigned_at, assigned_by)
      SELECT c.id, 'assigned', ($1::bigint[])[1 + (c.id / 5) % 5], now(), 'api' FROM conversations c WHERE c.id % 5 < 3 ON CONFLICT DO NOTHING`, [areaIds]);
    await admin.query('ANALYZE conversation_routes');
    web = await startRole('web', env);
    const base = `http://127.0.0.1:${web.port}`;
    const mint = async (body: Record<string, unknown>) => {
      const created = await request(`${base}/v1/tokens`, {
        method: 'POST', dispatcher: agent, headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ scopes: ['conversations:read'], ...body }),
      });
      const createdBody = await created.body.text();
      if (created.statusCode !== 201) throw new Error(`POST /v1/tokens: ${created.statusCode} ${createdBody.slice(0, 300)}`);
      return (JSON.parse(createdBody) as { token: string }).token;
    };
    const tokens = { all: await mint({ name: 'bench inbox' }), areas: await mint({ name: 'bench inbox, two areas', areaIds: areaIds.slice(0, 2) }) };
    const get = async (p: string, token = tokens.all) => {
      const r = await request(base + p, { dispatcher: agent, headers: { authorization: `Bearer ${token}` } });
      const body = await r.body.text();
      return { status: r.statusCode, body };
    };
    const getJson = async (p: string, token = tokens.all) => {
      const r = await get(p, token);
      if (r.status !== 200) throw new Error(`GET ${p}: ${r.status} ${r.body.slice(0, 300)}`);
      return JSON.parse(r.body) as { data: unknown[]; nextCursor: string | null };
    };

    // The deep page: the API's own cursor after DEEP rows, walked 200 at a time.
    let cursor: string | null = null;
    for (let seen = 0; seen < DEEP; seen += 200) {
      const page: { nextCursor: string | null } = await getJson(`/v1/conversations?limit=200${cursor ? `&cursor=${cursor}` : ''}`);
      if (!page.nextCursor) throw new Error(`the inbox ended before ${DEEP} conversations`);
      cursor = page.nextCursor;
    }
    const probe = await get(`/v1/conversations?limit=50&q=${encodeURIComponent(NO_MATCH)}`);
    const qSupported = probe.status === 200 && (JSON.parse(probe.body) as { data: unknown[] }).data.length === 0;
    log(`q= ${qSupported ? 'supported' : `not supported yet (probe answered ${probe.status}${probe.status === 200 ? ' with rows: q ignored' : ''})`}`);
    const variants: { name: string; path: string; what: string; token?: string }[] = [
      { name: 'inbox.list_p95_ms', path: '/v1/conversations?limit=50', what: 'first page' },
      { name: 'inbox.list_p95_ms_deep', path: `/v1/conversations?limit=50&cursor=${cursor}`, what: `page after ${DEEP.toLocaleString('en')} conversations (cursor)` },
      { name: 'inbox.list_p95_ms_unread', path: '/v1/conversations?limit=50&unread=true', what: 'unread=true, first page' },
      { name: 'inbox.list_p95_ms_q', path: `/v1/conversations?limit=50&q=${SEARCH}`, what: `q=${SEARCH}, first page` },
      { name: 'inbox.list_p95_ms_areas', path: '/v1/conversations?limit=50', what: 'first page of a token limited to 2 of 5 areas', token: tokens.areas },
      { name: 'inbox.list_p95_ms_areas_unread', path: '/v1/conversations?limit=50&unread=true', what: 'unread=true, first page of a token limited to 2 of 5 areas', token: tokens.areas },
      { name: 'inbox.messages_p95_ms', path: `/v1/conversations/${ds.bigConversationId}/messages?limit=50`, what: `messages page of the ${DATASET.bigConversation.toLocaleString('en')}-message conversation` },
    ];

    // Each page once unlogged first: its token is then one the web process has seen live, as on
    // every measured request (the inbox pages check a known token's liveness in their own statement).
    for (const v of variants) {
      // A page of no rows would measure the empty answer (and its token re-check), not a page.
      const first = await getJson(v.path, v.token);
      if (first.data.length === 0) throw new Error(`GET ${v.path}: no rows`);
    }
    // Each page once with every statement logged, to replay that SQL as the baseline.
    await admin.query('ALTER SYSTEM SET log_min_duration_statement = 0');
    await admin.query('SELECT pg_reload_conf()');
    await sleep(500);
    const sql = new Map<string, Statement[]>();
    // Every statement a request costs, the web process's own checks included (the replay is only the page's reads).
    const statementCounts = new Map<string, number>();
    for (const v of variants) {
      const offset = fs.statSync(logFile).size;
      await getJson(v.path, v.token);
      await sleep(300);
      const statements = loggedStatements(logFile, offset);
      statementCounts.set(v.name, (fs.readFileSync(logFile, 'utf8').slice(offset).match(/LOG: {2}duration: [\d.]+ ms {2}(?:execute [^:]*|statement): /g) ?? []).length);
      if (statements.length === 0) throw new Error(`no statement logged for ${v.path}`);
      sql.set(v.name, statements);
    }
    await admin.query('ALTER SYSTEM RESET log_min_duration_statement');
    await admin.query('SELECT pg_reload_conf()');
    await sleep(500);

    for (const v of variants) {
      // The plan of each statement, printed in full when the page misses its target.
      const plans: string[] = [];
      for (const s of sql.get(v.name)!) {
        const plan = await admin.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${s.text}`, s.values);
        plans.push(plan.rows.map((r) => r['QUERY PLAN']).join('\n'));
      }
      const loadBefore = load();
      const api = async () => (await get(v.path, v.token)).status === 200;
      const replay = async () => {
        for (const s of sql.get(v.name)!) await pool.query({ ...(s.name ? { name: s.name } : {}), text: s.text, values: s.values, rowMode: 'array', types: AS_SENT });
        return true;
      };
      const busy = await measurePair({ api, sql: replay }, seconds);
      // One client at a time: what a page costs without queueing behind 19 others on this machine's cores.
      const alone = await measurePair({ api, sql: replay }, seconds, 1, 300);
      const pacedRun = await measurePaced({ api, sql: replay }, seconds);
      const cpu = { api: await cpuPerRequest(api, [web.child.pid!], ds.postgres.pid), sql: await cpuPerRequest(replay, [process.pid], ds.postgres.pid) };
      const loadAfter = load();
      if (busy.api.p95 > TARGET_MS) log(`${v.name} misses ${TARGET_MS} ms; its plan:\n${plans.join('\n\n')}`);
      const ratio = (a: Stats, b: Stats) => (a.p95 / b.p95).toFixed(2);
      log(`${v.name}: ${statementCounts.get(v.name)} statements per request; ${CONCURRENCY} clients: api p50 ${busy.api.p50.toFixed(2)} p95 ${busy.api.p95.toFixed(2)} ms (${busy.api.requests} req, ${busy.api.perSecond.toFixed(0)}/s), `
        + `bare SQL p50 ${busy.sql.p50.toFixed(2)} p95 ${busy.sql.p95.toFixed(2)} ms (${busy.sql.perSecond.toFixed(0)}/s), ratio ${ratio(busy.api, busy.sql)}; `
        + `one client: api p95 ${alone.api.p95.toFixed(2)}, SQL p95 ${alone.sql.p95.toFixed(2)} ms, ratio ${ratio(alone.api, alone.sql)}; `
        + `paced ${PACED_RATE}/s: api p95 ${pacedRun.api.p95.toFixed(2)}, SQL p95 ${pacedRun.sql.p95.toFixed(2)} ms, ratio ${ratio(pacedRun.api, pacedRun.sql)}; `
        + `CPU per request: api ${cpuText(cpu.api, 'web')}, replay ${cpuText(cpu.sql, 'pg client')}; load ${loadBefore} → ${loadAfter}`);
      const bare = busy.sql;
      // Both rows of a variant fail alike: a q= the API ignores measures an unfiltered page.
      const failure = (api: Stats) => (api.errors ? { failed: `${api.errors} requests failed` }
        : v.name === 'inbox.list_p95_ms_q' && !qSupported ? { failed: 'the API ignores or refuses q= (a query matching nobody returned rows or an error)' } : {});
      out.push(result({
        name: v.name, value: busy.api.p95, unit: 'ms', baseline: bare.p95, baselineName: 'same SQL via pg', target: TARGET_MS, targetKind: 'max',
        note: `GET ${v.what}, limit 50, ${CONCURRENCY} concurrent keep-alive clients, ${busy.api.requests} requests (${busy.api.perSecond.toFixed(0)}/s, p50 ${busy.api.p50.toFixed(2)} ms); `
          + `baseline: the statements the service sent for it, run by pg at the same concurrency, in ${SLICE_MS} ms slices alternating with the API's (${bare.requests} runs, p50 ${bare.p50.toFixed(2)} ms); `
          + `one client at a time, alternating the same way: p95 ${alone.api.p95.toFixed(2)} ms vs SQL ${alone.sql.p95.toFixed(2)} ms (ratio ${ratio(alone.api, alone.sql)}); `
          + `CPU per request over ${CPU_REQUESTS} requests at ${CONCURRENCY} clients: API ${cpuText(cpu.api, 'web')}, replay ${cpuText(cpu.sql, 'pg client')}; `
          + `${statementCounts.get(v.name)} statements per request; the service prepares its statements (DATABASE_PREPARED_STATEMENTS=true); ${DATASET.conversations.toLocaleString('en')} conversations, ${DATASET.messages.toLocaleString('en')} messages; load average ${loadBefore} → ${loadAfter}`,
        ...failure(busy.api),
      }));
      out.push(result({
        name: `${v.name}_paced_${PACED_RATE}rps`, value: pacedRun.api.p95, unit: 'ms', baseline: pacedRun.sql.p95, baselineName: 'same SQL via pg, paced the same', target: TARGET_MS, targetKind: 'max',
        note: `GET ${v.what}, limit 50, open loop at ${PACED_RATE} requests/s (${CONCURRENCY} clients × ${PACED_PER_CLIENT}/s, each request started on schedule whether or not earlier ones answered; latency from the scheduled start), `
          + `${pacedRun.api.requests} requests, p50 ${pacedRun.api.p50.toFixed(2)} ms; baseline: the same statements run by pg on the same schedule, in ${PACED_SLICE_MS} ms slices alternating with the API's `
          + `(${pacedRun.sql.requests} runs, p50 ${pacedRun.sql.p50.toFixed(2)} ms); load average ${loadBefore} → ${loadAfter}`,
        ...failure(pacedRun.api),
      }));
    }
    out.push(result({
      name: 'inbox.dataset_setup_s', value: ds.startSeconds, unit: 's', baseline: null, target: null,
      note: `copy of the cached data directory + Postgres start + migrate check; ${ds.buildSeconds ? `cold build this run: ${ds.buildSeconds.toFixed(1)} s (COPY, index build, VACUUM FREEZE)` : 'cache was warm'}`,
    }));
  } finally {
    await agent.close();
    await web?.stop();
    await pool.end();
    await admin.end();
    await ds.postgres.stop();
  }
  return out;
}
