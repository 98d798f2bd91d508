// The API description against the running service: every route express answers is in
// /openapi.json (and every operation there is answered), and real answers of the main routes,
// errors included, match the document's schemas.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { sign } from '../../src/whatsapp/signature.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, VERIFY_TOKEN, type TestDb } from '../helpers/context.js';
import { eventually, json, startApp, type RunningApp } from '../helpers/app.js';
import { documentedFetch, expressRoutes, type Checked } from '../helpers/openapi.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';

let db: TestDb;
let sim: GraphSimulator;
let app: RunningApp;
let receiver: Receiver;
let document: { paths: Record<string, Record<string, { operationId: string }>> };
let call: (path: string, init?: RequestInit) => Promise<Checked>;
const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };
const send = (method: string, path: string, body?: unknown) => call(path, { method, headers: auth, body: body === undefined ? undefined : JSON.stringify(body) });

/** Bull Board: a page for people with its own internal API, deliberately left out of the document. */
const UNDESCRIBED_MOUNTS = ['/admin/queues'];

beforeAll(async () => {
  db = await createTestDb();
  sim = await startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 1, statusDelayMs: 10 } });
  app = await startApp(db, 'all', { GRAPH_API_BASE_URL: sim.url, FORWARD_ALLOW_PRIVATE: 'true', FORWARD_POLL_MS: '20', OUTBOUND_ATTEMPTS: '2', OUTBOUND_BACKOFF_MS: '50' });
  sim.configure({ webhookUrl: `${app.url}/webhooks/whatsapp` });
  receiver = await startReceiver();
  const res = await fetch(`${app.url}/openapi.json`);
  expect(res.status).toBe(200);
  document = await json(res);
  call = documentedFetch(document, app.url);
});
afterAll(async () => {
  await receiver?.close();
  await app?.stop();
  await sim?.close();
  await db?.drop();
});

describe('GET /openapi.json', () => {
  it('has an operation for every route express answers, and a route for every operation', () => {
    const routes = expressRoutes(app.app.http!)
      .filter((r) => !UNDESCRIBED_MOUNTS.some((m) => r.path === m || r.path.startsWith(`${m}/`)))
      .map((r) => `${r.method.toUpperCase()} ${r.path.replace(/:(\w+)/g, '{$1}')}`);
    const operations = Object.entries(document.paths).flatMap(([path, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${path}`));
    // The webhook POST is answered in front of express (raw bytes for the signature); it is exercised below.
    const outside = ['POST /webhooks/whatsapp'];
    expect(routes.filter((r) => !operations.includes(r)), 'routes without an operation').toEqual([]);
    expect(operations.filter((o) => !routes.includes(o) && !outside.includes(o)), 'operations without a route').toEqual([]);
    expect(routes.length).toBeGreaterThan(25);
  });

  it('serves /docs with its renderer from this service, not a CDN', async () => {
    const page = await call('/docs');
    expect(page.body).toContain('docs/assets/swagger-ui-bundle.js');
    expect(page.body).not.toMatch(/https?:\/\//);
    expect(page.body).toContain('validatorUrl: null');
    const bundle = await fetch(`${app.url}/docs/assets/swagger-ui-bundle.js`);
    expect(bundle.status).toBe(200);
    expect(bundle.headers.get('content-type')).toMatch(/javascript/);
    expect((await bundle.arrayBuffer()).byteLength).toBeGreaterThan(100_000);
    // The package's demo page (it loads a public example API) is not served.
    expect((await fetch(`${app.url}/docs/assets/index.html`)).status).toBe(404);
    expect((await call('/openapi.json')).body.openapi).toBe('3.1.0');
  });
});

describe('real answers match the document', () => {
  const customer = '5511900000777';
  let conversationId: number;
  let inboundWamid: string;

  it('operations and the webhook', async () => {
    expect((await call('/healthz')).status).toBe(200);
    expect((await call('/readyz')).status).toBe(200);
    expect((await call('/metrics')).body).toContain('wa_router_');
    expect((await call(`/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=42`)).body).toBe('42');
    expect((await call('/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=42')).status).toBe(403);
    inboundWamid = `wamid.OPENAPI${Date.now().toString(36)}`;
    const body = JSON.stringify({
      object: 'whatsapp_business_account',
      entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
        messaging_product: 'whatsapp',
        metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID },
        contacts: [{ profile: { name: 'Documented Customer' }, wa_id: customer }],
        messages: [{ from: customer, id: inboundWamid, timestamp: String(Math.floor(Date.now() / 1000)), type: 'text', text: { body: 'hello' } }],
      } }] }],
    });
    const webhook = (signature: string) => call('/webhooks/whatsapp', { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': signature }, body });
    expect((await webhook('sha256=00')).status).toBe(401);
    expect((await webhook(sign(body, APP_SECRET))).body).toEqual({ status: 'queued' });
  });

  it('conversations, messages, sending and marking read', async () => {
    const page = await eventually(async () => {
      const p = await send('GET', '/v1/conversations?limit=10');
      return p.body.data.length > 0 ? p : null;
    }, { what: 'the conversation' });
    conversationId = page.body.data[0].id;
    expect((await send('GET', `/v1/conversations/${conversationId}`)).body.contact.waId).toBe(customer);
    expect((await send('GET', `/v1/conversations?unread=true&channelId=${page.body.data[0].channelId}`)).body.data).toHaveLength(1);
    const messages = await send('GET', `/v1/conversations/${conversationId}/messages?limit=1`);
    expect(messages.body.data[0].wamid).toBe(inboundWamid);
    expect((await send('GET', `/v1/messages?wamid=${inboundWamid}`)).body.direction).toBe('inbound');

    const sent = await call('/v1/messages', { method: 'POST', headers: { ...auth, 'idempotency-key': 'openapi-1' }, body: JSON.stringify({ to: customer, type: 'text', text: { body: 'hi there' } }) });
    expect(sent.status).toBe(202);
    const delivered = await eventually(async () => {
      const m = await send('GET', `/v1/messages/${sent.body.id}`);
      return m.body.statuses.length > 0 ? m : null;
    }, { what: 'a status of the sent message' });
    expect(delivered.body.wamid).toMatch(/^wamid\./);
    expect((await send('POST', `/v1/conversations/${conversationId}/read`, { readReceipt: true })).body.readReceipt.sent).toBe(true);
    expect((await send('GET', `/v1/conversations/${conversationId}`)).body.unreadCount).toBe(0);
    const closed = await send('PATCH', `/v1/conversations/${conversationId}`, { status: 'closed', assignee: 'agent-7' });
    expect([closed.body.status, closed.body.assignee]).toEqual(['closed', 'agent-7']);
    expect((await send('GET', '/v1/conversations?status=closed&assignee=agent-7&q=' + customer.slice(-6))).body.data.map((c: { id: number }) => c.id)).toEqual([conversationId]);
  });

  it('tokens: created once, listed without the secret, revoked', async () => {
    const created = await send('POST', '/v1/tokens', { name: 'crm', scopes: ['conversations:read'] });
    expect(created.status).toBe(201);
    expect(created.body.token).toEqual(expect.any(String));
    const listed = await send('GET', '/v1/tokens');
    expect(listed.body.data.map((t: { id: number }) => t.id)).toContain(created.body.id);
    expect(listed.body.data[0]).not.toHaveProperty('token');
    const readOnly = await call('/v1/messages', { method: 'POST', headers: { authorization: `Bearer ${created.body.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ to: customer, type: 'text', text: { body: 'x' } }) });
    expect(readOnly.status).toBe(403);
    expect((await send('DELETE', `/v1/tokens/${created.body.id}`)).status).toBe(204);
  });

  it('channels, their sync and menus; areas, deliveries and hand-offs', async () => {
    const channels = await send('GET', '/v1/channels');
    const channelId = channels.body.items[0].id;
    expect((await send('POST', '/v1/channels', { phoneNumberId: '106540352242999', accessToken: 'another-token', name: 'Second' })).status).toBe(201);
    expect((await send('GET', `/v1/channels/${channelId}/sync`)).body.status).toBe('none');

    const created = await send('POST', '/v1/areas', { name: 'Sales', webhookUrl: receiver.url, hours: { timeZone: 'UTC', intervals: [{ day: 'mon', from: '00:00', to: '24:00' }], awayMessage: 'closed' } });
    expect(created.body.secret).toMatch(/^whsec_/);
    receiver.secrets.push(created.body.secret);
    const areaId = created.body.id;
    expect((await send('GET', '/v1/areas')).body.data).toHaveLength(1);
    expect((await send('GET', `/v1/areas/${areaId}`)).body.name).toBe('Sales');
    expect((await send('PATCH', `/v1/areas/${areaId}`, { name: 'Sales team' })).body.name).toBe('Sales team');
    expect((await send('POST', `/v1/areas/${areaId}/test`)).body.delivered).toBe(true);
    expect((await send('POST', `/v1/areas/${areaId}/rotate-secret`)).body.secret).toMatch(/^whsec_/);

    const menu = { greeting: 'Hi! Who do you want?', options: [{ id: 'sales', title: 'Sales', areaId }, { id: 'more', title: 'More', options: [{ id: 'sales2', title: 'Sales again', areaId }] }] };
    expect((await send('PUT', `/v1/channels/${channelId}/menu`, menu)).body.version).toBe(1);
    expect((await send('GET', `/v1/channels/${channelId}/menu`)).body.menu.options[1].options[0].id).toBe('sales2');

    expect((await send('POST', `/v1/conversations/${conversationId}/assign`, { areaId })).body.route).toMatchObject({ state: 'assigned', areaId });
    await eventually(async () => receiver.delivered().some((r) => r.body.type === 'conversation.assigned'), { what: 'the hand-off delivered' });
    const deliveries = await eventually(async () => {
      const d = await send('GET', `/v1/areas/${areaId}/deliveries?limit=10`);
      return d.body.data.some((x: { status: string; attempts: unknown[] }) => x.status === 'succeeded' && x.attempts.length > 0) ? d : null;
    }, { what: 'a delivery with its attempts' });
    expect(deliveries.body.data.length).toBeGreaterThan(0);
    expect((await send('POST', `/v1/conversations/${conversationId}/release`)).body.route.state).toBe('menu');
    expect((await send('POST', `/v1/areas/${areaId}/deliveries/${deliveries.body.data[0].id}/replay`)).status).toBe(404);
    expect((await send('DELETE', `/v1/areas/${areaId}`)).status).toBe(204);
  });

  it('dead letters and their replay', async () => {
    const to = '5511900000888';
    // Meta's 131000 is retried; out of attempts (2 here), the job is a dead letter.
    sim.configure({ failFirst: { [to]: { code: 131000, times: 2 } } });
    const channelId = (await send('GET', '/v1/channels')).body.items.find((c: { phoneNumberId: string }) => c.phoneNumberId === PHONE_NUMBER_ID).id;
    const sent = await send('POST', '/v1/messages', { channelId, to, type: 'text', text: { body: 'cannot arrive' } });
    expect(sent.status).toBe(202);
    const failed = await eventually(async () => {
      const m = await send('GET', `/v1/messages/${sent.body.id}`);
      return m.body.status === 'failed' ? m : null;
    }, { what: 'the message failed' });
    expect(failed.body.error.code).toBe(131000);
    const letter = await eventually(async () => (await send('GET', '/v1/dead-letters?limit=10')).body.items.find((i: { data: { messageId?: number } }) => i.data.messageId === sent.body.id), { what: 'the dead letter' });
    expect((await send('POST', `/v1/dead-letters/${encodeURIComponent(letter.id)}/replay`)).body.status).toBe('replayed');
  });

  it('events', async () => {
    const controller = new AbortController();
    const stream = await call(`/v1/events?access_token=${API_TOKEN}&types=message.created`, { signal: controller.signal });
    controller.abort();
    expect(stream.status).toBe(200);
  });

  it('errors: 400, 401, 404, 422', async () => {
    expect((await send('POST', '/v1/messages', { to: customer, type: 'text' })).body.error.code).toBe('invalid_message');
    expect((await send('POST', '/v1/messages', { to: customer, channelId: 9999, type: 'text', text: { body: 'x' } })).status).toBe(422);
    expect((await send('GET', '/v1/conversations?limit=0')).status).toBe(400);
    expect((await send('POST', '/v1/areas', { name: '' })).body.error.details.length).toBeGreaterThan(0);
    expect((await call('/v1/conversations')).status).toBe(401);
    expect((await send('GET', '/v1/conversations/999999')).status).toBe(404);
    expect((await send('GET', '/v1/messages/999999')).status).toBe(404);
    expect((await send('GET', '/v1/channels/999999/menu')).status).toBe(404);
  });

  it('errors: every /v1 operation that parses JSON answers a malformed body 400 and an oversized one 413, as documented', async () => {
    const operations = Object.entries(document.paths).flatMap(([path, item]) => Object.keys(item).map((method) => [method.toUpperCase(), path.replace(/\{\w+\}/g, '999999')] as const));
    // fetch sends no body with GET (express would parse one all the same).
    const v1 = operations.filter(([method, path]) => path.startsWith('/v1/') && method !== 'GET');
    expect(v1.length).toBeGreaterThan(15);
    for (const [path, item] of Object.entries(document.paths)) {
      if (path.startsWith('/v1/') && path !== '/v1/events') expect(Object.values(item).map((op) => Object.keys((op as unknown as { responses: object }).responses)).filter((r) => !r.includes('400') || !r.includes('413')), path).toEqual([]);
    }
    const outcome = (method: string, path: string, body: string) => call(path, { method, headers: auth, body }).then((r) => `${method} ${path}: ${r.status === 400 ? r.body.error.code : r.status}`, (e: Error) => e.message.split('\n')[0]!);
    const big = JSON.stringify({ text: 'x'.repeat(1_100_000) });
    const answers: string[] = [];
    for (const [method, path] of v1) answers.push(await outcome(method, path, '{'), await outcome(method, path, big));
    expect(answers).toEqual(v1.flatMap(([method, path]) => [`${method} ${path}: malformed_body`, `${method} ${path}: 413`]));
  });
});
