// The per-area circuit breaker is shared by every worker through Redis: two worker processes'
// worth of forwarders (in-process apps on one queue prefix) against one failing receiver. Once
// open, nobody delivers to the area; half-open lets exactly one probe through among all workers;
// the probe's failure opens the circuit again for the whole reset time, its success closes it.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { AreaCircuits } from '../../src/router/forwarding/circuit.js';
import { API_TOKEN, createTestDb, uniquePrefix, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { customerText } from '../helpers/meta-samples.js';

const RESET_MS = 2_000;
const TIMEOUT_MS = 3_000;
const THRESHOLD = 3;
const CONVERSATIONS = 6;

let db: TestDb;
let web: RunningApp;
const workers: RunningApp[] = [];
let receiver: Receiver;
let redis: Redis;
let circuits: AreaCircuits;
const prefix = uniquePrefix();

const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };
const api = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${web.url}${path}`, { method, headers: auth, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: await json(res) };
};

const inbound = (from: string) => customerText(from, `wamid.CIRCUIT${from}`, 'hi');

beforeAll(async () => {
  db = await createTestDb();
  const env = {
    QUEUE_PREFIX: prefix,
    FORWARD_ALLOW_PRIVATE: 'true',
    FORWARD_RETRY_SCHEDULE: Array.from({ length: 30 }, () => '0.1').join(','),
    FORWARD_TIMEOUT_MS: String(TIMEOUT_MS),
    FORWARD_CIRCUIT_THRESHOLD: String(THRESHOLD),
    FORWARD_CIRCUIT_RESET_MS: String(RESET_MS),
    FORWARD_POLL_MS: '20',
    FORWARD_ORDER_SETTLE_MS: '50',
  };
  web = await startApp(db, 'web', env);
  for (let i = 0; i < 2; i++) workers.push(await startApp(db, 'worker', env));
  receiver = await startReceiver();
  redis = new Redis(inject('redisUrl'));
  circuits = new AreaCircuits(redis, { prefix, threshold: THRESHOLD, resetMs: RESET_MS });
});
afterAll(async () => {
  for (const w of workers) await w.stop();
  await web?.stop();
  await receiver?.close();
  redis?.disconnect();
  await db?.drop();
});

it('opens for every worker, lets exactly one probe through when half-open, re-opens on its failure and closes on its success', async () => {
  const created = await api('POST', '/v1/areas', { name: 'Failing', webhookUrl: receiver.url, events: ['conversation.assigned'] });
  const areaId = created.body.id as number;
  receiver.answer([], 500);
  const state = async () => (await circuits.snapshot()).get(areaId)?.state ?? 'closed';

  // Several conversations, so both workers have queues of this area to claim.
  for (let i = 0; i < CONVERSATIONS; i++) expect((await postWebhook(web.url, inbound(`55119333300${i}`))).status).toBe(200);
  const convs = await eventually(async () => {
    const { rows } = await db.pool.query<{ id: number }>('SELECT id FROM conversations ORDER BY id');
    return rows.length === CONVERSATIONS ? rows.map((r) => r.id) : null;
  }, { what: 'conversations stored' });
  for (const id of convs) expect((await api('POST', `/v1/conversations/${id}/assign`, { areaId })).status).toBe(200);

  await eventually(async () => (await state()) === 'open', { what: 'circuit open', timeoutMs: 10_000 });
  // Deliveries already on their way when it opened may still land; then nothing while it is open.
  await new Promise((r) => setTimeout(r, 300));
  const whileOpen = receiver.received.length;
  expect(whileOpen).toBeGreaterThanOrEqual(THRESHOLD);
  // The probe hangs until the delivery timeout: both workers keep claiming meanwhile.
  receiver.answer(['hang'], 200);
  const firstProbe = await eventually(async () => (receiver.received.length > whileOpen ? receiver.received[whileOpen]! : null), { what: 'first probe', timeoutMs: RESET_MS + 5_000 });
  await new Promise((r) => setTimeout(r, TIMEOUT_MS - 500));
  expect(receiver.received.length, 'requests while one probe is out').toBe(whileOpen + 1);

  // The probe times out: open again, for the whole reset time.
  await eventually(async () => (await state()) === 'open' && receiver.received.length === whileOpen + 1, { what: 'circuit re-opened', timeoutMs: TIMEOUT_MS + 3_000 });
  const reopenedAt = Date.now();
  const secondProbe = await eventually(async () => receiver.received[whileOpen + 1], { what: 'second probe', timeoutMs: RESET_MS + 5_000 });
  expect(secondProbe.at - reopenedAt).toBeGreaterThanOrEqual(RESET_MS - 400);
  expect(secondProbe.at - firstProbe.at).toBeGreaterThanOrEqual(TIMEOUT_MS + RESET_MS - 400);
  expect(secondProbe.answered).toBe(200);

  // Its success closes the circuit: every conversation's event is delivered.
  await eventually(async () => new Set(receiver.delivered().map((x) => x.body.data.conversationId)).size === CONVERSATIONS, { what: 'all delivered after closing', timeoutMs: 10_000 });
  expect(await state()).toBe('closed');
  expect(receiver.received.every((x) => x.body.type === 'conversation.assigned')).toBe(true);
  // webhook-id stable across every attempt of an event.
  const ids = new Map<number, Set<string>>();
  for (const x of receiver.received) ids.set(x.body.data.conversationId!, (ids.get(x.body.data.conversationId!) ?? new Set()).add(x.webhookId));
  expect([...ids.values()].every((s) => s.size === 1)).toBe(true);
});
