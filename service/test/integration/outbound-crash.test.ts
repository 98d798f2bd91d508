// The sender SIGKILLed while Meta has messages whose wamids were not saved yet: nothing is
// sent twice (counted at the simulator), every message ends with the right status. Status
// webhooks come later than the worker lock, so the re-run job meets the in-flight marker
// before any status could have linked the wamid.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { APP_SECRET, createTestDb, PHONE_NUMBER_ID, testEnv, type TestDb } from '../helpers/context.js';
import { eventually, json, startApp, type RunningApp } from '../helpers/app.js';
import { spawnService, type ServiceProcess } from '../helpers/process.js';
import { auth, messageOf, sendText } from '../helpers/sender.js';

const LOCK_MS = 2_000;
/**
 * Slower than the lock plus a worker's restart and two stalled checks: the job runs again
 * before the status could tell the wamid.
 */
const STATUS_DELAY_MS = 10_000;

let db: TestDb;
let sim: GraphSimulator;
let web: RunningApp;
let env: Record<string, string>;
const workers: ServiceProcess[] = [];
const posts = (id: number) => sim.acceptedByCallback().get(`wr:${id}`) ?? 0;

const send = (to: string, body: string) => sendText(web.url, to, body);

beforeAll(async () => {
  db = await createTestDb();
  sim = await startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 0, statusDelayMs: STATUS_DELAY_MS, deliverAndRead: false } });
  env = testEnv(db, { GRAPH_API_BASE_URL: sim.url, WORKER_LOCK_MS: String(LOCK_MS), OUTBOUND_UNKNOWN_OUTCOME_GRACE_MS: '8000', OUTBOUND_CONCURRENCY: '20' });
  web = await startApp(db, 'web', env);
  sim.configure({ webhookUrl: `${web.url}/webhooks/whatsapp` });
});
afterAll(async () => {
  for (const w of workers) await w.kill();
  await web?.stop();
  await sim?.close();
  await db?.drop();
});

it('a worker killed while Meta holds the answer: sent once, ends sent', async () => {
  sim.configure({ responseDelayMs: 5_000 });
  const first = spawnService('worker', env);
  workers.push(first);
  await eventually(async () => (await json(await fetch(`${web.url}/v1/channels`, { headers: auth }))).items.length > 0, { what: 'bootstrap channel' });
  const id = await send('5511912345678', 'do not send me twice');
  // Meta has the message; the worker waits for the answer: kill it now.
  await eventually(async () => posts(id) === 1, { timeoutMs: 20_000, what: 'Graph call made' }).catch((e) => {
    throw new Error(`${e.message}\n${first.output()}`);
  });
  await first.kill('SIGKILL');
  sim.configure({ responseDelayMs: 0 });
  const second = spawnService('worker', env);
  workers.push(second);
  const m = await eventually(async () => {
    const v = await messageOf(web.url, id);
    return v.status === 'sent' ? v : null;
  }, { timeoutMs: 40_000, what: 'sent' });
  expect(m.wamid).toBe(sim.sent.find((s) => s.body.biz_opaque_callback_data === `wr:${id}`)!.wamid);
  // The re-run job met the marker after the lock; give it time to (wrongly) send again.
  await new Promise((r) => setTimeout(r, 3_000));
  expect(posts(id)).toBe(1);
});

it('a worker SIGKILLed while sends wait for their slot at 80 msg/s: each message sent once, none left pending', async () => {
  // Answers a little slow, so calls are in flight at the kill, and most sends wait for a slot.
  sim.configure({ latencyMs: 40, jitterMs: 20, responseDelayMs: 0 });
  await fetch(`${web.url}/v1/channels`, { method: 'POST', headers: auth, body: JSON.stringify({ phoneNumberId: PHONE_NUMBER_ID, accessToken: 'test-access-token', messagesPerSecond: 80 }) });
  const worker = spawnService('worker', env);
  workers.push(worker);
  const ids: number[] = [];
  for (let batch = 0; batch < 8; batch++) {
    ids.push(...(await Promise.all(Array.from({ length: 40 }, (_, i) => send(`5521977${String(batch).padStart(2, '0')}${String(i).padStart(4, '0')}`, `load ${batch}.${i}`)))));
  }
  await eventually(async () => ids.filter((id) => posts(id) > 0).length >= 100, { timeoutMs: 30_000, what: '100 sent' }).catch((e) => {
    throw new Error(`${e.message}\n${worker.output()}`);
  });
  await worker.kill('SIGKILL');
  workers.push(spawnService('worker', env));
  await eventually(async () => {
    const { rows } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM messages WHERE id = ANY($1::bigint[]) AND (status = 'pending' OR wamid IS NULL)", [ids]);
    return rows[0]!.n === 0;
  }, { timeoutMs: 120_000, what: 'no message left pending' }).catch(async (e) => {
    const { rows } = await db.pool.query("SELECT id, status, wamid IS NOT NULL AS has_wamid FROM messages WHERE id = ANY($1::bigint[]) AND (status = 'pending' OR wamid IS NULL) LIMIT 5", [ids]);
    throw new Error(`${e.message}: ${JSON.stringify(rows.map((r) => ({ ...r, posts: posts(Number(r.id)) })))}\n${workers.at(-1)!.output().slice(-3000)}`);
  });
  const counts = ids.map(posts);
  expect(counts.filter((c) => c !== 1).length, `sent more than once or never: ${ids.filter((id) => posts(id) !== 1).slice(0, 5).join(', ')}`).toBe(0);
}, 180_000);
