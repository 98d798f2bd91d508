// The sender SIGKILLed after Meta accepted a message but before the wamid was saved:
// the message is not sent twice and ends with the right status.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, testEnv, type TestDb } from '../helpers/context.js';
import { eventually, json, startApp, type RunningApp } from '../helpers/app.js';
import { spawnService, type ServiceProcess } from '../helpers/process.js';

let db: TestDb;
let sim: GraphSimulator;
let web: RunningApp;
let env: Record<string, string>;
const workers: ServiceProcess[] = [];

beforeAll(async () => {
  db = await createTestDb();
  sim = await startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 0, statusDelayMs: 300, responseDelayMs: 5_000 } });
  env = testEnv(db, { GRAPH_API_BASE_URL: sim.url, WORKER_LOCK_MS: '2000' });
  web = await startApp(db, 'web', env);
  sim.configure({ webhookUrl: `${web.url}/webhooks/whatsapp` });
});
afterAll(async () => {
  for (const w of workers) await w.kill();
  await web?.stop();
  await sim?.close();
  await db?.drop();
});

it('sends once and ends read', async () => {
  const first = spawnService('worker', env);
  workers.push(first);
  await eventually(async () => (await json(await fetch(`${web.url}/v1/channels`, { headers: { authorization: `Bearer ${API_TOKEN}` } }))).items.length > 0, { what: 'bootstrap channel' });
  const res = await fetch(`${web.url}/v1/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ to: '5511912345678', type: 'text', text: { body: 'do not send me twice' } }),
  });
  expect(res.status).toBe(202);
  const { id } = await json(res);
  // Meta has the message; the worker waits for the answer: kill it now.
  await eventually(async () => sim.sent.length === 1, { timeoutMs: 20_000, what: 'Graph call made' }).catch((e) => {
    throw new Error(`${e.message}\n${first.output()}`);
  });
  await first.kill('SIGKILL');
  sim.configure({ responseDelayMs: 0 });
  const second = spawnService('worker', env);
  workers.push(second);
  const m = await eventually(async () => {
    const v = await json(await fetch(`${web.url}/v1/messages/${id}`, { headers: { authorization: `Bearer ${API_TOKEN}` } }));
    return v.status === 'read' ? v : null;
  }, { timeoutMs: 30_000, what: 'read' });
  expect(m.wamid).toBe(sim.sent[0]!.wamid);
  // Give the restarted worker time to (wrongly) send again, then count.
  await new Promise((r) => setTimeout(r, 3_000));
  expect(sim.sent).toHaveLength(1);
});
