// A worker process SIGKILLed in the middle of a backlog loses nothing and doubles nothing.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDb, PHONE_NUMBER_ID, testEnv, type TestDb } from '../helpers/context.js';
import { eventually, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { spawnService, type ServiceProcess } from '../helpers/process.js';

const TOTAL = 3_000;
let db: TestDb;
let web: RunningApp;
let env: Record<string, string>;
const workers: ServiceProcess[] = [];

const body = (i: number) =>
  JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '1', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '1', phone_number_id: PHONE_NUMBER_ID }, contacts: [{ profile: { name: `C${i % 50}` }, wa_id: `55119${String(i % 50).padStart(8, '0')}` }], messages: [{ from: `55119${String(i % 50).padStart(8, '0')}`, id: `wamid.CRASH${String(i).padStart(8, '0')}`, timestamp: String(1_760_000_000 + i), type: 'text', text: { body: `m${i}` } }] } }] }],
  });

const stored = async () => Number((await db.pool.query("SELECT count(*) AS n FROM messages WHERE wamid LIKE 'wamid.CRASH%'")).rows[0].n);

beforeAll(async () => {
  db = await createTestDb();
  env = testEnv(db, { WORKER_LOCK_MS: '2000', WORKER_CONCURRENCY: '4' });
  web = await startApp(db, 'web', env);
});
afterAll(async () => {
  for (const w of workers) await w.kill();
  await web?.stop();
  await db?.drop();
});

it('finishes the backlog exactly once after SIGKILL', async () => {
  // Fill the queue first, so the worker is killed with jobs in flight and a backlog behind.
  for (let i = 0; i < TOTAL; i += 100) {
    const res = await Promise.all(Array.from({ length: Math.min(100, TOTAL - i) }, (_, k) => postWebhook(web.url, body(i + k))));
    expect(res.every((r) => r.status === 200)).toBe(true);
  }
  const first = spawnService('worker', env);
  workers.push(first);
  await eventually(async () => (await stored()) >= 300, { timeoutMs: 60_000, what: 'worker progress' }).catch((e) => {
    throw new Error(`${e.message}\n${first.output()}`);
  });
  await first.kill('SIGKILL');
  const atKill = await stored();
  expect(atKill).toBeLessThan(TOTAL);

  const second = spawnService('worker', env);
  workers.push(second);
  await eventually(async () => (await stored()) === TOTAL, { timeoutMs: 90_000, intervalMs: 200, what: `all ${TOTAL} stored` }).catch((e) => {
    throw new Error(`${e.message}\n${second.output()}`);
  });
  expect(await stored()).toBe(TOTAL);
  // Unread counts are derived from rows really inserted: re-run jobs did not double them.
  const unread = Number((await db.pool.query("SELECT sum(c.unread_count) AS n FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE k.wa_id LIKE '55119%'")).rows[0].n);
  expect(unread).toBe(TOTAL);
  const events = Number((await db.pool.query("SELECT count(*) AS n FROM inbound_events WHERE payload::text LIKE '%wamid.CRASH%'")).rows[0].n);
  expect(events).toBe(TOTAL);

  // SIGTERM is the graceful path: finish what is in flight, exit 0 well within 30 s.
  const t0 = Date.now();
  expect(await second.kill('SIGTERM')).toBe(0);
  expect(Date.now() - t0).toBeLessThan(30_000);
});
