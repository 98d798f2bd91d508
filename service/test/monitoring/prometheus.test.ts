// The shipped dashboard and alerts against a real Prometheus scraping a running stack: one web and
// one worker process behind nginx, Redis master + replica + 3 Sentinels, PgBouncer, Postgres, the
// Graph API simulator and an area's receiver, under webhook, send, history and forwarding traffic.
// Every panel query and alert expression must parse and name only metrics the service exports, every
// panel query must return data (the load below gives each one something to show) and every alert
// selector must select a series, and two alerts must fire for real: dead letters after a poisoned webhook,
// a Redis failover after the master is killed. Prometheus scrapes every second and the shipped
// expressions are evaluated through its HTTP API, so nothing waits for the rules' `for:`.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { presets } from '../../../cdk8s/src/presets.js';
import { alertGroups, SCRAPE_JOBS } from '../../../cdk8s/src/monitoring/rules.js';
import { runLoad, webhookSet } from '../../../bench/lib/loadgen.js';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { startHaStack, type HaStack } from '../../../scripts/stack/ha.js';
import { freePort, sleep } from '../../../scripts/stack/proc.js';
import { envelope, historyChange, inboundEnvelope, textMessage } from '../fixtures/payloads.js';
import { signedWebhook } from '../fixtures/sign.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { monitoringFilesOf, prometheusBinaries } from './tools.js';

const PRESET = 'standard';
const NAMESPACE = 'wa-router';
const TOKEN = 'monitoring-graph-token';
const FAILING_RECIPIENT = '5511988887777';

interface PromResult { metric: Record<string, string>; value: [number, string] }

let dir = '';
let stack: HaStack | undefined;
let sim: GraphSimulator | undefined;
let receiver: Receiver | undefined;
let prometheus: ChildProcess | undefined;
let promUrl = '';
let db: pg.Pool | undefined;

async function query(expr: string): Promise<{ ok: boolean; error?: string; result: PromResult[] }> {
  const res = await fetch(`${promUrl}/api/v1/query?${new URLSearchParams({ query: expr })}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { result: PromResult[] } };
  return { ok: body.status === 'success', error: body.error, result: body.data?.result ?? [] };
}

async function until<T>(what: string | (() => string), check: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await sleep(1_000);
  }
}

async function api(method: string, p: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${stack!.url}${p}`, {
    method,
    headers: { authorization: `Bearer ${stack!.secrets.apiToken}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status >= 300) throw new Error(`${method} ${p}: ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, unknown>;
}

async function postWebhook(payload: unknown): Promise<number> {
  const w = signedWebhook(payload, stack!.secrets.appSecret);
  const res = await fetch(`${stack!.url}/webhooks/whatsapp`, { method: 'POST', headers: w.headers, body: w.body });
  await res.text();
  return res.status;
}

const count = async (sql: string, params: unknown[] = []) => Number((await db!.query<{ n: string }>(sql, params)).rows[0]!.n);

/** The shipped panel queries, as Grafana would send them with a 1-minute rate interval. */
function panelQueries(): { panel: string; exprs: string[] }[] {
  const dashboard = JSON.parse(fs.readFileSync(monitoringFilesOf(PRESET).dashboard, 'utf8')) as { panels: { type: string; title: string; targets?: { expr: string }[] }[] };
  return dashboard.panels.filter((p) => p.type !== 'row').map((p) => ({
    panel: p.title,
    exprs: (p.targets ?? []).map((t) => t.expr.replaceAll('$__rate_interval', '1m').replaceAll('$namespace', NAMESPACE)),
  }));
}

const alerts = () => alertGroups(presets[PRESET], NAMESPACE).flatMap((g) => g.rules);
const alertExpr = (name: string) => alerts().find((a) => a.alert === name)!.expr;

beforeAll(async () => {
  const bins = prometheusBinaries();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-monitoring-'));
  fs.chmodSync(dir, 0o755);
  receiver = await startReceiver();
  sim = await startGraphSimulator({ tokens: {}, config: { forcedErrors: { [FAILING_RECIPIENT]: 131047 } } });
  stack = await startHaStack({
    dir: path.join(dir, 'stack'),
    webs: 1,
    workers: 1,
    redisReplicas: 1,
    secrets: { accessToken: TOKEN },
    env: { GRAPH_API_BASE_URL: sim.url, INBOUND_ATTEMPTS: '2', FORWARD_ALLOW_PRIVATE: 'true', RATE_LIMIT_PER_MINUTE: '0' },
  });
  sim.tokens.set(stack.secrets.phoneNumberId, TOKEN);
  sim.configure({ webhookUrl: `${stack.url}/webhooks/whatsapp`, appSecret: stack.secrets.appSecret });
  db = new pg.Pool({ connectionString: stack.directDatabaseUrl, max: 2 });
  db.on('error', () => undefined);

  // Scraped like the ServiceMonitors scrape a cluster: job named after the Service, the namespace as a label.
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  const target = (job: string, ports: number[]) => ({ job_name: job, static_configs: [{ targets: ports.map((p) => `127.0.0.1:${p}`), labels: { namespace: NAMESPACE } }] });
  const config = path.join(dir, 'prometheus.json');
  fs.writeFileSync(config, JSON.stringify({
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    scrape_configs: [target(SCRAPE_JOBS.web, stack.webs.map((w) => w.port)), target(SCRAPE_JOBS.worker, stack.workers.map((w) => w.port))],
  }));
  prometheus = spawn(bins.prometheus, [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
  await until('Prometheus ready', async () => (await fetch(`${promUrl}/-/ready`).then((r) => r.ok, () => false)), 60_000);

  // Traffic: inbound messages with echoes and statuses, an area receiving forwarded events, sends
  // (one refused by Meta), a history chunk.
  const area = await api('POST', '/v1/areas', { name: 'Sales', webhookUrl: receiver.url, events: ['message.received'] });
  const warm = webhookSet({ count: 100, phoneNumberId: stack.secrets.phoneNumberId, prefix: 'MONWARM', contacts: 10, statuses: true });
  await runLoad({ url: `${stack.url}/webhooks/whatsapp`, appSecret: stack.secrets.appSecret, deliveries: warm, rate: 200, deadlineMs: 60_000 });
  await until('the warm-up messages stored', async () => (await count("SELECT count(*) AS n FROM messages WHERE wamid LIKE 'wamid.CHAOSMONWARM%'")) >= 200, 60_000);
  await db.query(
    `INSERT INTO conversation_routes (conversation_id, state, area_id, assigned_at, assigned_by)
     SELECT id, 'assigned', $1::bigint, now(), 'api' FROM conversations
     ON CONFLICT (conversation_id) DO UPDATE SET state = 'assigned', area_id = EXCLUDED.area_id`,
    [area['id']],
  );
  await runLoad({ url: `${stack.url}/webhooks/whatsapp`, appSecret: stack.secrets.appSecret, deliveries: webhookSet({ count: 30, phoneNumberId: stack.secrets.phoneNumberId, prefix: 'MONFWD', contacts: 10 }), rate: 100, deadlineMs: 60_000 });
  await until('events forwarded to the area', async () => receiver!.delivered().length >= 30, 60_000);
  await api('POST', '/v1/messages', { to: '5511977776666', type: 'text', text: { body: 'Seu pedido saiu para entrega.' } });
  await api('POST', '/v1/messages', { to: FAILING_RECIPIENT, type: 'text', text: { body: 'Este não chega.' } });
  expect(await postWebhook(envelope(historyChange({ phoneNumberId: stack.secrets.phoneNumberId, progress: 40 })))).toBe(200);
  await until('the history chunk applied', async () => (await count('SELECT count(*) AS n FROM sync_runs WHERE progress > 0 AND chunks_applied > 0')) >= 1, 60_000);
  await until(() => `one send accepted and one refused by Meta (131047, outside the 24 h window) (simulator: ${JSON.stringify(sim!.stats)})`, async () => sim!.stats.accepted >= 1 && (sim!.stats.errors['131047'] ?? 0) >= 1, 60_000);
  // Enough scrapes after the traffic for every rate() over a minute to have two samples of it.
  await sleep(5_000);
}, 40 * 60_000);

afterAll(async () => {
  if (prometheus && prometheus.exitCode === null) {
    const exited = new Promise((r) => prometheus!.once('exit', r));
    prometheus.kill('SIGTERM');
    await exited;
  }
  await db?.end();
  await stack?.stop();
  await sim?.close();
  await receiver?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('a real Prometheus scraping the stack', () => {
  it('every panel query and alert expression parses, names only metrics the service exports and selects series that exist', async () => {
    const metadata = (await (await fetch(`${promUrl}/api/v1/metadata`)).json()) as { data: Record<string, unknown> };
    const exported = new Set(Object.keys(metadata.data));
    const known = (name: string) => name === 'up' || exported.has(name) || exported.has(name.replace(/_(bucket|count|sum)$/, ''));
    const problems: string[] = [];
    const check = async (where: string, expr: string): Promise<PromResult[]> => {
      for (const name of new Set(expr.match(/\b(wa_router_[a-z0-9_]+|up)\b/g) ?? [])) {
        if (!known(name)) problems.push(`${where}: ${name} is not exported by the service`);
      }
      const r = await query(expr);
      if (!r.ok) problems.push(`${where}: ${r.error}`);
      return r.result;
    };
    const panels = panelQueries();
    expect(panels.length).toBeGreaterThanOrEqual(25);
    for (const { panel, exprs } of panels) {
      for (const [i, e] of exprs.entries()) {
        const where = `panel "${panel}" query ${i + 1}`;
        if ((await check(where, e)).length === 0) problems.push(`${where} shows no data: ${e}`);
      }
    }
    // A selector naming a label value the service never exports (a misspelt outcome) would keep its
    // alert silent for ever: each one must select a series under this load.
    for (const a of alerts()) {
      await check(`alert ${a.alert}`, a.expr);
      for (const selector of new Set(a.expr.match(/\b(?:wa_router_[a-z0-9_]+|up)\{[^}]*\}/g) ?? [])) {
        if ((await query(`count(${selector})`)).result.length === 0) problems.push(`alert ${a.alert}: ${selector} selects no series`);
      }
    }
    expect(problems).toEqual([]);
    // The scrape targets the alerts watch are the ones that are up.
    const up = await query(`up{namespace="${NAMESPACE}"}`);
    expect(up.result.map((r) => `${r.metric['job']}=${r.value[1]}`).sort()).toEqual([`${SCRAPE_JOBS.web}=1`, `${SCRAPE_JOBS.worker}=1`]);
  });

  it('"dead letters growing" fires after a poisoned webhook is dead-lettered, and not before', async () => {
    const expr = alertExpr('WaRouterDeadLettersGrowing');
    expect((await query(expr)).result).toEqual([]);
    // A fault in Postgres itself: this one message can never be written, whatever the worker does.
    await db!.query(`CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused %', NEW.wamid; END $$;
      CREATE TRIGGER poison BEFORE INSERT ON messages FOR EACH ROW WHEN (NEW.wamid = 'wamid.MONITORING-POISON') EXECUTE FUNCTION refuse_poison()`);
    expect(await postWebhook(inboundEnvelope([textMessage({ id: 'wamid.MONITORING-POISON', from: '5511900000999' })], { phoneNumberId: stack!.secrets.phoneNumberId }))).toBe(200);
    const firing = await until('WaRouterDeadLettersGrowing to fire', async () => {
      const r = await query(expr);
      return r.result.length ? r.result : false;
    }, 120_000);
    expect(firing.map((r) => [r.metric['namespace'], r.metric['queue']])).toEqual([[NAMESPACE, 'inbound']]);
    expect(await count("SELECT count(*) AS n FROM messages WHERE wamid = 'wamid.MONITORING-POISON'")).toBe(0);
  }, 180_000);

  it('"Redis failover" fires after the master is killed, and not before', async () => {
    const expr = alertExpr('WaRouterRedisFailover');
    expect((await query(expr)).result).toEqual([]);
    // Healthy: the master has the replica the stack runs, so the replica alert is silent too.
    expect((await query(alertExpr('WaRouterRedisReplicaMissing'))).result).toEqual([]);
    const before = await stack!.master();
    await stack!.redis[before.index]!.kill();
    await until('Sentinel to promote the replica', async () => (await stack!.master().catch(() => before)).index !== before.index, 60_000);
    const firing = await until('WaRouterRedisFailover to fire', async () => {
      const r = await query(expr);
      return r.result.length ? r.result : false;
    }, 90_000);
    expect(firing.map((r) => r.metric['namespace'])).toEqual([NAMESPACE]);
    // The promoted master has no replica while the old one is down.
    expect((await query(alertExpr('WaRouterRedisReplicaMissing'))).result).not.toEqual([]);
  }, 180_000);
});
