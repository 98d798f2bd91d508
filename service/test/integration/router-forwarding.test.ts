// Areas and signed forwarding against real Postgres, Redis, the Graph API simulator and real
// HTTP receivers that verify every Standard Webhooks signature with the reference library.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';

let db: TestDb;
let sim: GraphSimulator;
let app: RunningApp;
const receivers: Receiver[] = [];
const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };
const api = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${app.url}${path}`, { method, headers: auth, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: res.status === 204 ? null : await json(res) };
};

let seq = 0;
const wamid = () => `wamid.ROUTER${Date.now().toString(36)}${(seq++).toString(36).padStart(4, '0')}`;
const base = Math.floor(Date.now() / 1000) - 600;
let tick = 0;
function inbound(from: string, texts: string[], at?: number): string {
  return JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
      messaging_product: 'whatsapp',
      metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID },
      contacts: [{ profile: { name: `Customer ${from.slice(-3)}` }, wa_id: from }],
      messages: texts.map((body) => ({ from, id: wamid(), timestamp: String(at ?? base + tick++), type: 'text', text: { body } })),
    } }] }],
  });
}

async function area(name: string, events?: string[]) {
  const receiver = await startReceiver();
  receivers.push(receiver);
  const res = await api('POST', '/v1/areas', { name, webhookUrl: receiver.url, ...(events ? { events } : {}) });
  expect(res.status).toBe(201);
  receiver.secrets.push(res.body.secret);
  return { id: res.body.id as number, secret: res.body.secret as string, receiver };
}

/** A conversation with `n` stored messages from `who`. */
async function conversation(who: string, texts = ['hi']): Promise<number> {
  expect((await postWebhook(app.url, inbound(who, texts))).status).toBe(200);
  return eventually(async () => {
    const { rows } = await db.pool.query('SELECT cv.id, count(m.id)::int AS n FROM conversations cv JOIN contacts c ON c.id = cv.contact_id JOIN messages m ON m.conversation_id = cv.id WHERE c.wa_id = $1 GROUP BY cv.id', [who]);
    return rows[0]?.n >= texts.length ? (rows[0].id as number) : null;
  }, { what: `conversation of ${who}` });
}

const bodies = (r: Receiver, type = 'message.received') => r.delivered().filter((x) => x.body.type === type).map((x) => (x.body.data.message as { body: string }).body);

beforeAll(async () => {
  db = await createTestDb();
  sim = await startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 2, jitterMs: 2, statusDelayMs: 10 } });
  app = await startApp(db, 'all', {
    GRAPH_API_BASE_URL: sim.url,
    FORWARD_ALLOW_PRIVATE: 'true',
    // As the presets run: the claim, the bodies and the outcomes by prepared statement (the other
    // router files run them unnamed).
    DATABASE_PREPARED_STATEMENTS: 'true',
    FORWARD_RETRY_SCHEDULE: '0.2,0.2,0.2',
    FORWARD_POLL_MS: '20',
    FORWARD_TIMEOUT_MS: '1500',
    FORWARD_CIRCUIT_THRESHOLD: '1000',
    // Webhooks posted back to back are stored by concurrent jobs; on a loaded test machine a
    // later one can be stored well after an earlier one.
    FORWARD_ORDER_SETTLE_MS: '200',
  });
  sim.configure({ webhookUrl: `${app.url}/webhooks/whatsapp` });
});
afterAll(async () => {
  await app?.stop();
  await sim?.close();
  for (const r of receivers) await r.close();
  await db?.drop();
});

describe('areas API', () => {
  it('creates an area with a whsec_ secret shown once, reads, patches and deletes it', async () => {
    const created = await api('POST', '/v1/areas', { name: 'Sales', webhookUrl: 'http://127.0.0.1:9/hook', events: ['message.received'], hours: { timeZone: 'America/Sao_Paulo', intervals: [{ day: 'mon', from: '09:00', to: '18:00' }], awayMessage: 'We are closed' } });
    expect(created.status).toBe(201);
    expect(created.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(Buffer.from(created.body.secret.slice(6), 'base64')).toHaveLength(24);
    const got = await api('GET', `/v1/areas/${created.body.id}`);
    expect(got.body).toMatchObject({ id: created.body.id, name: 'Sales', events: ['message.received'], channelIds: null, disabled: null });
    expect(JSON.stringify(got.body)).not.toContain(created.body.secret.slice(6));
    expect((await api('GET', '/v1/areas')).body.data.map((a: { id: number }) => a.id)).toContain(created.body.id);
    const patched = await api('PATCH', `/v1/areas/${created.body.id}`, { name: 'Sales BR', events: null });
    expect(patched.body).toMatchObject({ name: 'Sales BR', events: null });
    expect((await api('DELETE', `/v1/areas/${created.body.id}`)).status).toBe(204);
    expect((await api('GET', `/v1/areas/${created.body.id}`)).status).toBe(404);
    expect((await api('DELETE', `/v1/areas/${created.body.id}`)).status).toBe(404);
  });

  it('refuses bad input naming each field', async () => {
    const r = await api('POST', '/v1/areas', { name: '', webhookUrl: 'ftp://x', events: ['message.sent'], hours: { timeZone: 'Mars/Olympus', intervals: [{ day: 'mon', from: '18:00', to: '09:00' }], awayMessage: 'x' } });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_request');
    const fields = r.body.error.details.map((d: { field: string }) => d.field);
    expect(fields).toEqual(expect.arrayContaining(['name', 'webhookUrl', 'events.0', 'hours.timeZone', 'hours.intervals.0.to']));
    expect((await api('POST', '/v1/areas', { name: 'x', webhookUrl: 'http://127.0.0.1:9/', channelIds: [999999] })).body.error.details[0].field).toBe('channelIds');
    expect((await api('PATCH', '/v1/areas/999999', { name: 'x' })).status).toBe(404);
  });

  it('refuses private and loopback webhook URLs unless FORWARD_ALLOW_PRIVATE=true', async () => {
    const strict = await startApp(db, 'web', { FORWARD_ALLOW_PRIVATE: 'false' });
    try {
      for (const url of ['http://127.0.0.1:8080/x', 'http://10.1.2.3/x', 'http://169.254.169.254/latest', 'http://[::1]/x', 'http://localhost/x', 'http://[::ffff:192.168.0.1]/x', 'http://[::7f00:1]/x', 'http://[::a9fe:a9fe]/latest', 'http://[::]/x']) {
        const res = await fetch(`${strict.url}/v1/areas`, { method: 'POST', headers: auth, body: JSON.stringify({ name: 'x', webhookUrl: url }) });
        const body = await json(res);
        expect(res.status, url).toBe(400);
        expect(body.error.details[0].field).toBe('webhookUrl');
      }
      const ok = await fetch(`${strict.url}/v1/areas`, { method: 'POST', headers: auth, body: JSON.stringify({ name: 'public', webhookUrl: 'https://93.184.215.14/hook' }) });
      expect(ok.status).toBe(201);
    } finally {
      await strict.stop();
    }
  });
});

describe('forwarding', () => {
  it('delivers an assigned conversation’s messages and statuses to its area only, in order, signed', async () => {
    const a = await area('Support');
    const b = await area('Billing');
    const conv = await conversation('5511911110001', ['before assignment']);
    const assigned = await api('POST', `/v1/conversations/${conv}/assign`, { areaId: a.id });
    expect(assigned.body.route).toMatchObject({ state: 'assigned', areaId: a.id });
    const shown = await api('GET', `/v1/conversations/${conv}`);
    expect(shown.body.route).toEqual({ state: 'assigned', areaId: a.id, assignedAt: assigned.body.route.assignedAt });
    expect((await api('GET', `/v1/conversations?areaId=${a.id}`)).body.data.map((c: { id: number }) => c.id)).toEqual([conv]);
    expect((await api('GET', `/v1/conversations?areaId=${b.id}`)).body.data).toEqual([]);
    const texts = Array.from({ length: 12 }, (_, i) => `m${i}`);
    // Several webhook posts, several messages each: order must survive batching.
    for (let i = 0; i < texts.length; i += 3) expect((await postWebhook(app.url, inbound('5511911110001', texts.slice(i, i + 3)))).status).toBe(200);
    await eventually(async () => bodies(a.receiver).length === texts.length, { what: 'all messages forwarded' });
    expect(bodies(a.receiver)).toEqual(texts);
    // Webhooks arrive out of order (Meta does not promise order): the area still gets the customer's order.
    const now = Math.floor(Date.now() / 1000);
    await postWebhook(app.url, inbound('5511911110001', ['second'], now + 2));
    await postWebhook(app.url, inbound('5511911110001', ['first'], now + 1));
    await eventually(async () => bodies(a.receiver).length === texts.length + 2, { what: 'out-of-order webhooks forwarded' });
    expect(bodies(a.receiver).slice(-2)).toEqual(['first', 'second']);
    // The same for messages stamped before the hand-off (a customer's phone queued them).
    await postWebhook(app.url, inbound('5511911110001', ['old second'], base + 501));
    await postWebhook(app.url, inbound('5511911110001', ['old first'], base + 500));
    await eventually(async () => bodies(a.receiver).length === texts.length + 4, { what: 'old out-of-order webhooks forwarded' });
    expect(bodies(a.receiver).slice(-2)).toEqual(['old first', 'old second']);
    const first = a.receiver.delivered()[0]!;
    expect(first.body.type).toBe('conversation.assigned');
    expect(first.body.data).toMatchObject({ conversationId: conv, areaId: a.id, contact: { waId: '5511911110001' } });
    const msg = a.receiver.delivered().find((x) => x.body.type === 'message.received')!;
    expect(msg.body.data).toMatchObject({ conversationId: conv, areaId: a.id, channelId: expect.any(Number), contact: { waId: '5511911110001', profileName: 'Customer 001' } });
    // The message is shaped like GET /v1/messages/:id.
    const m = msg.body.data.message as { id: number };
    const viaApi = await api('GET', `/v1/messages/${m.id}`);
    expect(Object.keys(m).sort()).toEqual(Object.keys(viaApi.body).sort());
    // Value for value, times included (the body reads them as text, the API through a Date).
    expect(m).toEqual(viaApi.body);
    expect(a.receiver.received.every((x) => x.verified)).toBe(true);
    expect(a.receiver.received.every((x) => /^v1,[A-Za-z0-9+/]+=*$/.test(x.signature))).toBe(true);

    // A reply's statuses reach the area too.
    const sent = await api('POST', '/v1/messages', { to: '5511911110001', type: 'text', text: { body: 'agent reply' } });
    expect(sent.status).toBe(202);
    await eventually(async () => a.receiver.delivered().filter((x) => x.body.type === 'message.status').length >= 3, { what: 'statuses forwarded' });
    const statuses = a.receiver.delivered().filter((x) => x.body.type === 'message.status');
    expect(statuses.map((x) => (x.body.data as unknown as { status: string }).status)).toEqual(['sent', 'delivered', 'read']);
    expect(statuses.every((x) => (x.body.data.message as { id: number }).id === sent.body.id)).toBe(true);
    expect(b.receiver.received).toHaveLength(0);
    // Nothing before the assignment was forwarded.
    expect(bodies(a.receiver)).not.toContain('before assignment');
  });

  it('retries a failing receiver with the same webhook-id and delivers everything in order once it recovers', async () => {
    const a = await area('Flaky');
    const conv = await conversation('5511911110002');
    a.receiver.answer([500, 500, 503]);
    await api('POST', `/v1/conversations/${conv}/assign`, { areaId: a.id });
    await postWebhook(app.url, inbound('5511911110002', ['r1', 'r2', 'r3']));
    await eventually(async () => bodies(a.receiver).length === 3, { what: 'recovered deliveries' });
    const assignedAttempts = a.receiver.received.filter((x) => x.body.type === 'conversation.assigned');
    expect(assignedAttempts.map((x) => x.answered)).toEqual([500, 500, 503, 200]);
    expect(new Set(assignedAttempts.map((x) => x.webhookId)).size).toBe(1);
    // Every attempt, the retries too, carries a signature the receiver verifies.
    expect(a.receiver.received.every((x) => x.verified)).toBe(true);
    expect(bodies(a.receiver)).toEqual(['r1', 'r2', 'r3']);
    // Each later event was first tried only after the earlier one succeeded.
    const firstTry = (t: string) => a.receiver.received.findIndex((x) => (x.body.data.message as { body?: string } | undefined)?.body === t);
    expect(firstTry('r1')).toBeGreaterThan(a.receiver.received.findIndex((x) => x.answered === 200));
    const list = await api('GET', `/v1/areas/${a.id}/deliveries?status=succeeded`);
    const assignedDelivery = list.body.data.find((d: { type: string }) => d.type === 'conversation.assigned');
    expect(assignedDelivery.attempts.map((x: { statusCode: number }) => x.statusCode)).toEqual([500, 500, 503, 200]);
    expect(assignedDelivery.attempts[0]).toMatchObject({ latencyMs: expect.any(Number), error: 'HTTP 500' });
  });

  it('a receiver that hangs for one area does not delay another area', async () => {
    const down = await area('Down');
    const up = await area('Up');
    down.receiver.answer([], 'hang');
    const c1 = await conversation('5511911110003');
    const c2 = await conversation('5511911110004');
    await api('POST', `/v1/conversations/${c1}/assign`, { areaId: down.id });
    await api('POST', `/v1/conversations/${c2}/assign`, { areaId: up.id });
    for (let i = 0; i < 5; i++) {
      await postWebhook(app.url, inbound('5511911110003', [`down${i}`]));
      await postWebhook(app.url, inbound('5511911110004', [`up${i}`]));
    }
    const started = Date.now();
    await eventually(async () => bodies(up.receiver).length === 5, { what: 'healthy area deliveries', timeoutMs: 5_000 });
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(bodies(up.receiver)).toEqual(['up0', 'up1', 'up2', 'up3', 'up4']);
    expect(down.receiver.delivered()).toHaveLength(0);
    await api('PATCH', `/v1/areas/${down.id}`, { enabled: false });
  });

  it('hanging areas with many conversations leave slots for a healthy area', async () => {
    // A worker with 4 slots: two hanging areas must not take them all. The timeout outlasts the
    // test, so no failure is seen: the per-area cap alone must keep slots free.
    // Its own database, so the suite's worker does not deliver these events.
    const [main, mainDb] = [app, db];
    db = await createTestDb();
    app = await startApp(db, 'all', { FORWARD_ALLOW_PRIVATE: 'true', FORWARD_RETRY_SCHEDULE: '0.2,0.2,0.2', FORWARD_TIMEOUT_MS: '20000', FORWARD_CIRCUIT_THRESHOLD: '1000', FORWARD_ORDER_SETTLE_MS: '200', FORWARD_CONCURRENCY: '4' });
    try {
      const hanging = [await area('Hangs 1'), await area('Hangs 2')];
      const healthy = await area('Healthy next to hanging ones');
      for (const h of hanging) h.receiver.answer([], 'hang');
      let n = 0;
      for (const h of hanging) {
        for (let i = 0; i < 3; i++) {
          const who = `55119222200${n++}`;
          const conv = await conversation(who);
          await api('POST', `/v1/conversations/${conv}/assign`, { areaId: h.id });
        }
      }
      await new Promise((r) => setTimeout(r, 400));
      const conv = await conversation('5511922220099');
      await api('POST', `/v1/conversations/${conv}/assign`, { areaId: healthy.id });
      const started = Date.now();
      await postWebhook(app.url, inbound('5511922220099', ['healthy 1']));
      await eventually(async () => bodies(healthy.receiver).length === 1, { what: 'healthy area delivery', timeoutMs: 6_000 });
      expect(Date.now() - started).toBeLessThan(1_500);
      for (const h of hanging) await api('PATCH', `/v1/areas/${h.id}`, { enabled: false });
      for (const h of hanging) await h.receiver.close();
    } finally {
      await app.stop();
      await db.drop();
      [app, db] = [main, mainDb];
    }
  });

  it('410 Gone disables the area', async () => {
    const a = await area('Gone');
    const conv = await conversation('5511911110005');
    a.receiver.answer([410]);
    await api('POST', `/v1/conversations/${conv}/assign`, { areaId: a.id });
    await eventually(async () => (await api('GET', `/v1/areas/${a.id}`)).body.disabled, { what: 'area disabled' });
    await postWebhook(app.url, inbound('5511911110005', ['after 410']));
    await new Promise((r) => setTimeout(r, 500));
    expect(a.receiver.received).toHaveLength(1);
    const dead = await api('GET', `/v1/areas/${a.id}/deliveries?status=dead`);
    expect(dead.body.data[0]).toMatchObject({ type: 'conversation.assigned', lastStatusCode: 410 });
  });

  it('410 Gone dead-letters the events waiting behind it, with the reason', async () => {
    const a = await area('Gone with a backlog');
    const conv = await conversation('5511911110010');
    // The first attempt hangs until the timeout, so messages queue up behind it; its retry meets 410.
    a.receiver.answer(['hang', 410]);
    await api('POST', `/v1/conversations/${conv}/assign`, { areaId: a.id });
    await eventually(async () => a.receiver.received.length === 1, { what: 'first attempt' });
    await postWebhook(app.url, inbound('5511911110010', ['queued 1', 'queued 2']));
    await eventually(async () => (await db.pool.query("SELECT count(*)::int AS n FROM forward_events WHERE area_id = $1 AND type = 'message.received'", [a.id])).rows[0].n === 2, { what: 'queued behind the hanging one' });
    await eventually(async () => (await api('GET', `/v1/areas/${a.id}`)).body.disabled, { what: 'area disabled' });
    expect((await api('GET', `/v1/areas/${a.id}/deliveries?status=pending`)).body.data).toEqual([]);
    const dead = (await api('GET', `/v1/areas/${a.id}/deliveries?status=dead`)).body.data as { type: string; lastError: string; attempts: unknown[] }[];
    expect(dead.map((d) => d.type).sort()).toEqual(['conversation.assigned', 'message.received', 'message.received']);
    for (const d of dead.filter((x) => x.type === 'message.received')) {
      expect(d.lastError).toBe('area disabled: the webhook answered 410 Gone');
      expect(d.attempts).toEqual([]);
    }
    expect(bodies(a.receiver)).toEqual([]);
  });

  it('disabling an area through the API dead-letters its pending events; they replay once it is enabled', async () => {
    const a = await area('Disabled with a backlog');
    const conv = await conversation('5511911110011');
    a.receiver.answer(['hang'], 200);
    await api('POST', `/v1/conversations/${conv}/assign`, { areaId: a.id });
    await eventually(async () => a.receiver.received.length === 1, { what: 'first attempt hangs' });
    await postWebhook(app.url, inbound('5511911110011', ['waiting 1', 'waiting 2']));
    await eventually(async () => (await api('GET', `/v1/areas/${a.id}/deliveries?status=pending`)).body.data.length === 3, { what: 'queued behind the hanging one' });
    expect((await api('PATCH', `/v1/areas/${a.id}`, { enabled: false })).body.disabled).toMatchObject({ reason: 'disabled by the API' });
    expect((await api('GET', `/v1/areas/${a.id}/deliveries?status=pending`)).body.data).toEqual([]);
    const dead = (await api('GET', `/v1/areas/${a.id}/deliveries?status=dead`)).body.data as { id: number; webhookId: string; type: string; lastError: string }[];
    expect(dead).toHaveLength(3);
    expect(dead.every((d) => d.lastError === 'area disabled: disabled by the API')).toBe(true);
    // The hanging attempt ends after the area was disabled: it stays dead-lettered.
    await new Promise((r) => setTimeout(r, 1_800));
    expect((await api('GET', `/v1/areas/${a.id}/deliveries?status=pending`)).body.data).toEqual([]);
    const refused = await api('POST', `/v1/areas/${a.id}/deliveries/${dead[0]!.id}/replay`);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('area_disabled');

    expect((await api('PATCH', `/v1/areas/${a.id}`, { enabled: true })).body.disabled).toBeNull();
    for (const d of [...dead].reverse()) expect((await api('POST', `/v1/areas/${a.id}/deliveries/${d.id}/replay`)).status).toBe(202);
    await eventually(async () => bodies(a.receiver).length === 2, { what: 'replayed messages' });
    expect(bodies(a.receiver)).toEqual(['waiting 1', 'waiting 2']);
    const delivered = a.receiver.delivered();
    expect(delivered[0]!.body.type).toBe('conversation.assigned');
    expect(new Set(delivered.map((x) => x.webhookId))).toEqual(new Set(dead.map((d) => d.webhookId)));
  });

  it('a disabled area does not hold the conversation once it is reassigned', async () => {
    const gone = await area('Gone before reassign');
    const next = await area('Takes over');
    const conv = await conversation('5511911110008');
    gone.receiver.answer([410]);
    await api('POST', `/v1/conversations/${conv}/assign`, { areaId: gone.id });
    await eventually(async () => (await api('GET', `/v1/areas/${gone.id}`)).body.disabled, { what: 'area disabled' });
    await postWebhook(app.url, inbound('5511911110008', ['while disabled']));
    await eventually(async () => (await db.pool.query('SELECT count(*)::int AS n FROM messages WHERE conversation_id = $1', [conv])).rows[0].n === 2, { what: 'stored while disabled' });
    await api('POST', `/v1/conversations/${conv}/assign`, { areaId: next.id });
    await postWebhook(app.url, inbound('5511911110008', ['after reassign']));
    const started = Date.now();
    await eventually(async () => bodies(next.receiver).length === 1, { what: 'the new area receives', timeoutMs: 5_000 });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(bodies(next.receiver)).toEqual(['after reassign']);
    expect(gone.receiver.received).toHaveLength(1);
    // Nothing piles up for the disabled area (the message, the release) to flood it when re-enabled.
    expect((await api('GET', `/v1/areas/${gone.id}/deliveries?status=pending`)).body.data).toEqual([]);
  });

  it('a hanging area does not hold the conversation once it is reassigned', async () => {
    const stuck = await area('Hangs before reassign');
    const next = await area('Takes over from the hanging one');
    stuck.receiver.answer([], 'hang');
    const conv = await conversation('5511911110009');
    await api('POST', `/v1/conversations/${conv}/assign`, { areaId: stuck.id });
    await postWebhook(app.url, inbound('5511911110009', ['to the hanging area']));
    await eventually(async () => (await db.pool.query('SELECT count(*)::int AS n FROM messages WHERE conversation_id = $1', [conv])).rows[0].n === 2, { what: 'stored before the reassignment' });
    await api('POST', `/v1/conversations/${conv}/assign`, { areaId: next.id });
    await postWebhook(app.url, inbound('5511911110009', ['after reassign']));
    const started = Date.now();
    await eventually(async () => bodies(next.receiver).length === 1, { what: 'the new area receives', timeoutMs: 5_000 });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(bodies(next.receiver)).toEqual(['after reassign']);
    await api('PATCH', `/v1/areas/${stuck.id}`, { enabled: false });
  });

  it('dead-letters after the schedule, lets the next event go, and replays with the same webhook-id', async () => {
    const a = await area('Broken');
    const conv = await conversation('5511911110006');
    a.receiver.answer([500, 500, 500, 500]);
    await api('POST', `/v1/conversations/${conv}/assign`, { areaId: a.id });
    await postWebhook(app.url, inbound('5511911110006', ['after dead']));
    await eventually(async () => bodies(a.receiver).length === 1, { what: 'next event after dead-letter' });
    const dead = await api('GET', `/v1/areas/${a.id}/deliveries?status=dead`);
    expect(dead.body.data).toHaveLength(1);
    expect(dead.body.data[0].attempts).toHaveLength(4);
    const webhookId = dead.body.data[0].webhookId;
    expect((await api('POST', `/v1/areas/${a.id}/deliveries/${dead.body.data[0].id}/replay`)).status).toBe(202);
    await eventually(async () => a.receiver.delivered().find((x) => x.webhookId === webhookId), { what: 'replayed delivery' });
    expect((await api('POST', `/v1/areas/${a.id}/deliveries/${dead.body.data[0].id}/replay`)).status).toBe(404);
  });

  it('signs with both secrets after a rotation, and pings on request', async () => {
    const a = await area('Rotating');
    const rotated = await api('POST', `/v1/areas/${a.id}/rotate-secret`);
    expect(rotated.body.secret).toMatch(/^whsec_/);
    expect(Date.parse(rotated.body.previousExpiresAt)).toBeGreaterThan(Date.now());
    a.receiver.secrets.splice(0, 1, rotated.body.secret);
    const ping = await api('POST', `/v1/areas/${a.id}/test`);
    expect(ping.body).toMatchObject({ delivered: true, statusCode: 200 });
    const got = a.receiver.received.at(-1)!;
    expect(got.body.type).toBe('ping');
    expect(got.verified).toBe(true);
    expect(got.signature.split(' ')).toHaveLength(2);
    a.receiver.secrets.splice(0, 1, a.secret);
    await api('POST', `/v1/areas/${a.id}/test`);
    expect(a.receiver.received.at(-1)!.verified).toBe(true);
    a.receiver.answer([503]);
    expect((await api('POST', `/v1/areas/${a.id}/test`)).body).toMatchObject({ delivered: false, statusCode: 503 });
  });

  it('release tells the area and stops forwarding', async () => {
    const a = await area('Releasing');
    const conv = await conversation('5511911110007');
    await api('POST', `/v1/conversations/${conv}/assign`, { areaId: a.id });
    const released = await api('POST', `/v1/conversations/${conv}/release`);
    expect(released.body.route).toEqual({ state: 'menu', areaId: null, assignedAt: null });
    await eventually(async () => a.receiver.delivered().some((x) => x.body.type === 'conversation.released'), { what: 'released event' });
    await postWebhook(app.url, inbound('5511911110007', ['after release']));
    await new Promise((r) => setTimeout(r, 400));
    expect(bodies(a.receiver)).toEqual([]);
    expect((await api('POST', `/v1/conversations/${conv}/assign`, { areaId: 999999 })).body.error.details[0].field).toBe('areaId');
    expect((await api('POST', '/v1/conversations/999999/assign', { areaId: a.id })).status).toBe(404);
  });
});
