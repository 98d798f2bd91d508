// Regression (issue 14, defect 5): events for a number no channel served yet were lost when the
// channel was created: the flag was cleared before the replay stored anything, a worker's cached
// "no such channel" made the replay store nothing, and events processed while the channel was
// being saved stayed unrouted. Here a web process and two worker processes (each with its own
// channel cache, so only the saved-channel message flushes the one that did not run the replay),
// a backlog of unrouted events, and new ones arriving while the channel is created and saved
// again: each event is in the inbox once, with unread counts that say so.
import { Queue } from 'bullmq';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { QUEUES } from '../../src/queue/names.js';
import { contact, inboundEnvelope, textMessage } from '../fixtures/payloads.js';
import { API_TOKEN, createTestDb, testEnv, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { spawnService, type ServiceProcess } from '../helpers/process.js';

const NEW_NUMBER = '109999999999001';
const SENDERS = ['5511944440001', '5511944440002', '5511944440003'];
let db: TestDb;
let web: RunningApp;
const workers: ServiceProcess[] = [];
const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };

beforeAll(async () => {
  db = await createTestDb();
  // Low concurrency: both workers take part in storing the stream.
  const env = testEnv(db, { WORKER_CONCURRENCY: '2' });
  web = await startApp(db, 'web', env);
  workers.push(spawnService('worker', env), spawnService('worker', env));
  const queue = new Queue(QUEUES.inbound, { connection: { url: env.REDIS_URL! }, prefix: env.QUEUE_PREFIX! });
  try {
    await eventually(async () => (await queue.getWorkersCount()) >= 2, { timeoutMs: 60_000, intervalMs: 250, what: 'two worker processes' }).catch((e: Error) => {
      throw new Error(`${e.message}\n${workers.map((w) => w.output()).join('\n')}`);
    });
  } finally {
    await queue.close();
  }
});
afterAll(async () => {
  for (const w of workers) await w.kill('SIGTERM');
  await web?.stop();
  await db?.drop();
});

let n = 0;
const sent = new Map<string, string[]>(SENDERS.map((s) => [s, []]));
async function postOne(): Promise<number> {
  const from = SENDERS[n % SENDERS.length]!;
  const id = `wamid.UNROUTED-${n++}`;
  sent.get(from)!.push(id);
  const body = JSON.stringify(inboundEnvelope([textMessage({ from, id, body: id })], { phoneNumberId: NEW_NUMBER, contacts: [contact({ waId: from })] }));
  return (await postWebhook(web.url, body)).status;
}

it('stores every event once when the channel is created while its events are replayed and new ones arrive', async () => {
  const backlog = await Promise.all(Array.from({ length: 30 }, () => postOne()));
  expect(backlog.every((s) => s === 200)).toBe(true);
  await eventually(async () => Number((await db.pool.query('SELECT count(*) AS n FROM inbound_events WHERE unrouted')).rows[0].n) === 30, { what: 'backlog kept unrouted' });

  // A steady stream keeps every worker's "no such channel" cache fresh while the channel is saved.
  const stream = (async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) {
      statuses.push(await postOne());
      await new Promise((r) => setTimeout(r, 30));
    }
    return statuses;
  })();
  await new Promise((r) => setTimeout(r, 500));
  const created = await fetch(`${web.url}/v1/channels`, { method: 'POST', headers: auth, body: JSON.stringify({ phoneNumberId: NEW_NUMBER, accessToken: 'token-1' }) });
  expect(created.status).toBe(201);
  const channel = await json(created);
  await new Promise((r) => setTimeout(r, 300));
  // Saving it again (a token update) replays concurrently with the first replay.
  const saved = await fetch(`${web.url}/v1/channels`, { method: 'POST', headers: auth, body: JSON.stringify({ phoneNumberId: NEW_NUMBER, accessToken: 'token-2' }) });
  expect(saved.status).toBe(200);
  expect((await stream).every((s) => s === 200)).toBe(true);

  const total = [...sent.values()].reduce((a, ids) => a + ids.length, 0);
  expect(total).toBe(90);
  const inbox = async () => (await json(await fetch(`${web.url}/v1/conversations?limit=50&channelId=${channel.id}`, { headers: auth }))).data as { id: number; unreadCount: number; contact: { waId: string } }[];
  const conversations = await eventually(async () => {
    const list = await inbox();
    return list.length === SENDERS.length && list.reduce((a, c) => a + c.unreadCount, 0) >= total ? list : null;
  }, { timeoutMs: 45_000, intervalMs: 250, what: 'all 90 events in the inbox' });
  // Settle: a second store of any event would show now.
  await new Promise((r) => setTimeout(r, 6_000));
  for (const c of await inbox()) {
    const expected = [...sent.get(c.contact.waId)!].sort();
    expect(c.unreadCount).toBe(expected.length);
    const page = await json(await fetch(`${web.url}/v1/conversations/${c.id}/messages?limit=100`, { headers: auth }));
    expect(page.data.map((m: { wamid: string }) => m.wamid).sort()).toEqual(expected);
  }
  expect(conversations).toHaveLength(3);
  expect(Number((await db.pool.query('SELECT count(*) AS n FROM inbound_events WHERE unrouted')).rows[0].n)).toBe(0);
});
