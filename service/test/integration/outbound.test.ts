// Outbound against the Graph API simulator, real Postgres and Redis: persist first,
// Meta's limits honoured by scheduling, error codes handled as documented.
import { beforeEach, describe, expect, it } from 'vitest';
import { PHONE_NUMBER_ID } from '../helpers/context.js';
import { eventually, json } from '../helpers/app.js';
import { auth, messageOf, recipients, senderForFile } from '../helpers/sender.js';

const stack = senderForFile({ latencyMs: 2, jitterMs: 2, statusDelayMs: 10 }, {
  OUTBOUND_BACKOFF_MS: '50',
  CIRCUIT_THRESHOLD: '10',
  CIRCUIT_RESET_MS: '1500',
  PAIR_BURST: '3',
  PAIR_INTERVAL_MS: '300',
  WORKER_LOCK_MS: '2000',
});

async function send(body: Record<string, unknown>, headers: Record<string, string> = {}) {
  const res = await fetch(`${stack.app.url}/v1/messages`, { method: 'POST', headers: { ...auth, ...headers }, body: JSON.stringify(body) });
  return { status: res.status, replayed: res.headers.get('idempotent-replayed'), body: await json(res) };
}
const message = (id: number) => messageOf(stack.app.url, id);
const recipient = recipients('55119');

beforeEach(() => {
  stack.sim.configure({ outage: false, serverErrorRate: 0, forcedErrors: {}, failFirst: {}, pairBurst: 3, pairIntervalMs: 300 });
});

describe('POST /v1/messages', () => {
  it('persists pending, sends, and follows the status webhooks to read', async () => {
    const to = recipient();
    const res = await send({ to, type: 'text', text: { body: 'Olá! Seu pedido saiu para entrega.' } });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ status: 'pending' });
    const m = await eventually(async () => {
      const v = await message(res.body.id);
      // Webhooks of one message may be stored out of order: wait for all three.
      return v.status === 'read' && v.statuses.length === 3 ? v : null;
    }, { what: 'read' });
    expect(m.wamid).toMatch(/^wamid\./);
    expect(m.statuses.map((s: { status: string }) => s.status)).toEqual(['sent', 'delivered', 'read']);
    const sent = stack.sim.sent.find((s) => s.wamid === m.wamid)!;
    expect(sent.body).toMatchObject({ messaging_product: 'whatsapp', to, type: 'text', text: { body: 'Olá! Seu pedido saiu para entrega.' } });
    expect(sent.body.biz_opaque_callback_data).toBe(`wr:${res.body.id}`);
  });

  it('rejects an invalid message with the fields named', async () => {
    const res = await send({ to: 'abc', type: 'image', image: { caption: 'no id or link' } });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_message');
    const paths = res.body.error.details.map((d: { path: string }) => d.path);
    expect(paths).toEqual(expect.arrayContaining(['to', 'image']));
  });

  it('creates nothing new for a repeated Idempotency-Key', async () => {
    const to = recipient();
    const headers = { 'Idempotency-Key': `key-${to}` };
    const first = await send({ to, type: 'text', text: { body: 'once' } }, headers);
    const again = await Promise.all([send({ to, type: 'text', text: { body: 'once' } }, headers), send({ to, type: 'text', text: { body: 'once' } }, headers)]);
    expect(again.map((r) => r.body.id)).toEqual([first.body.id, first.body.id]);
    await eventually(async () => (await message(first.body.id)).wamid);
    await new Promise((r) => setTimeout(r, 300));
    expect(stack.sim.sent.filter((s) => s.to === to)).toHaveLength(1);
    const rows = await stack.db.pool.query("SELECT count(*)::int AS n FROM messages WHERE idempotency_key = $1", [`key-${to}`]);
    expect(rows.rows[0].n).toBe(1);
  });

  it('replays a repeated Idempotency-Key whatever the order of the fields, and refuses it for a different request', async () => {
    const to = recipient();
    const headers = { 'Idempotency-Key': `key-${to}` };
    const first = await send({ to, type: 'text', text: { body: 'once', preview_url: false } }, headers);
    expect([first.status, first.replayed]).toEqual([202, null]);
    const reordered = await send({ text: { preview_url: false, body: 'once' }, type: 'text', to }, headers);
    expect([reordered.status, reordered.replayed, reordered.body.id]).toEqual([202, 'true', first.body.id]);
    for (const other of [{ to, type: 'text', text: { body: 'twice', preview_url: false } }, { to: recipient(), type: 'text', text: { body: 'once', preview_url: false } }]) {
      const r = await send(other, headers);
      expect([r.status, r.body.error?.code, JSON.stringify(r.body).includes(String(first.body.id))]).toEqual([422, 'idempotency_key_reused', false]);
    }
    await eventually(async () => (await message(first.body.id)).wamid);
    await new Promise((r) => setTimeout(r, 300));
    expect(stack.sim.sent.filter((s) => s.to === to).map((s) => (s.body.text as { body: string }).body)).toEqual(['once']);
    // Objects Meta defines (interactive) pass as written, in the client's order of fields.
    const buttons = { type: 'button', body: { text: 'Pick one' }, action: { buttons: [{ type: 'reply', reply: { id: 'y', title: 'Yes' } }] } };
    const menu = await send({ to, type: 'interactive', interactive: buttons }, { 'Idempotency-Key': `menu-${to}` });
    const menuAgain = await send({ to, type: 'interactive', interactive: { action: buttons.action, body: buttons.body, type: 'button' } }, { 'Idempotency-Key': `menu-${to}` });
    expect([menu.status, menuAgain.status, menuAgain.replayed, menuAgain.body.id]).toEqual([202, 202, 'true', menu.body.id]);
  });

  it('keeps the order per recipient and paces the pair rate (no 131056)', async () => {
    const to = recipient();
    const before = stack.sim.stats.errors[131056] ?? 0;
    const ids: number[] = [];
    for (let i = 0; i < 8; i++) ids.push((await send({ to, type: 'text', text: { body: `part ${i}` } })).body.id);
    await eventually(async () => stack.sim.sent.filter((s) => s.to === to).length === 8, { timeoutMs: 20_000, what: '8 sent' });
    expect(stack.sim.sent.filter((s) => s.to === to).map((s) => (s.body.text as { body: string }).body)).toEqual(ids.map((_, i) => `part ${i}`));
    expect(stack.sim.stats.errors[131056] ?? 0).toBe(before);
    // 3 at once, then one per 300 ms: the last left at least 4 intervals after the first.
    const times = stack.sim.sent.filter((s) => s.to === to).map((s) => s.at);
    expect(times[7]! - times[0]!).toBeGreaterThanOrEqual(4 * 300 - 50);
  });
});

describe('error codes', () => {
  it.each([
    [131047, 'more than 24 hours'],
    [131026, null],
    [131049, null],
    [132001, 'template'],
    [100, null],
  ])('%i fails the message without retrying', async (code, hint) => {
    const to = recipient();
    stack.sim.configure({ forcedErrors: { [to]: code } });
    const before = stack.sim.stats.requests;
    const res = await send({ to, type: 'text', text: { body: 'x' } });
    const m = await eventually(async () => {
      const v = await message(res.body.id);
      return v.status === 'failed' ? v : null;
    }, { what: `failed with ${code}` });
    expect(m.error.code).toBe(code);
    if (hint) expect(String(m.error.details).toLowerCase()).toContain(hint);
    await new Promise((r) => setTimeout(r, 300));
    // 131026 is accepted by the API and fails by webhook; the others fail at the API: one call each.
    expect(stack.sim.stats.requests - before).toBe(1);
  });

  it('retries 131000 and 5xx until they pass', async () => {
    // Three refusals in a row, then Meta takes it: within the 5 attempts. (A random error rate made
    // this check fail whenever chance refused all 5, about 1 run in 13.)
    const to = recipient();
    const before = stack.sim.stats.errors[131000] ?? 0;
    stack.sim.configure({ failFirst: { [to]: { code: 131000, times: 3 } } });
    const res = await send({ to, type: 'text', text: { body: 'retry me' } });
    await eventually(async () => (await message(res.body.id)).wamid, { timeoutMs: 20_000, what: 'eventually sent' });
    expect((stack.sim.stats.errors[131000] ?? 0) - before).toBe(3);
  });

  it('pauses the channel on 190 and sends once the token is fixed', async () => {
    stack.sim.tokens.set(PHONE_NUMBER_ID, 'rotated-token');
    const res = await send({ to: recipient(), type: 'text', text: { body: 'after token fix' } });
    const paused = await eventually(async () => {
      const list = await json(await fetch(`${stack.app.url}/v1/channels`, { headers: auth }));
      return list.items.find((c: { phoneNumberId: string; paused: boolean }) => c.phoneNumberId === PHONE_NUMBER_ID && c.paused);
    }, { what: 'channel paused' });
    expect(paused.pausedReason).toMatch(/^190/);
    expect((await message(res.body.id)).status).toBe('pending');
    const upd = await fetch(`${stack.app.url}/v1/channels`, { method: 'POST', headers: auth, body: JSON.stringify({ phoneNumberId: PHONE_NUMBER_ID, accessToken: 'rotated-token' }) });
    expect(upd.status).toBe(200);
    const body = await json(upd);
    expect(body).not.toHaveProperty('accessToken');
    await eventually(async () => (await message(res.body.id)).wamid, { timeoutMs: 30_000, what: 'sent after the fix' });
  });
});

describe('throttling and the dead-letter queue', () => {
  it('rides out 130429 when the channel claims more throughput than Meta gives it', async () => {
    stack.sim.configure({ messagesPerSecond: 5 });
    const before = stack.sim.stats.errors[130429] ?? 0;
    await fetch(`${stack.app.url}/v1/channels`, { method: 'POST', headers: auth, body: JSON.stringify({ phoneNumberId: PHONE_NUMBER_ID, accessToken: 'rotated-token', messagesPerSecond: 200 }) });
    await new Promise((r) => setTimeout(r, 5_500));
    const ids = await Promise.all(Array.from({ length: 30 }, async () => (await send({ to: recipient(), type: 'text', text: { body: 'burst' } })).body.id as number));
    await eventually(async () => (await Promise.all(ids.map(message))).every((m) => m.wamid), { timeoutMs: 30_000, what: 'all sent despite 130429' });
    expect(stack.sim.stats.errors[130429] ?? 0).toBeGreaterThan(before);
    stack.sim.configure({ messagesPerSecond: 80 });
    await fetch(`${stack.app.url}/v1/channels`, { method: 'POST', headers: auth, body: JSON.stringify({ phoneNumberId: PHONE_NUMBER_ID, accessToken: 'rotated-token', messagesPerSecond: 80 }) });
  });

  it('dead-letters a message whose retries ran out, and replays it', async () => {
    stack.sim.configure({ serverErrorRate: 1 });
    const res = await send({ to: recipient(), type: 'text', text: { body: 'dead letter' } });
    const dl = await eventually(async () => {
      const list = await json(await fetch(`${stack.app.url}/v1/dead-letters`, { headers: auth }));
      return list.items.find((i: { data: { messageId: number } }) => i.data.messageId === res.body.id);
    }, { timeoutMs: 20_000, what: 'dead letter' });
    expect(dl.reason).toMatch(/131000/);
    // Retries ran out: failed with the last error, no longer pending (it would block its conversation).
    const failed = await eventually(async () => {
      const v = await message(res.body.id);
      return v.status === 'failed' ? v : null;
    }, { what: 'failed' });
    expect(failed.error.code).toBe(131000);
    stack.sim.configure({ serverErrorRate: 0 });
    const replay = await fetch(`${stack.app.url}/v1/dead-letters/${encodeURIComponent(dl.id)}/replay`, { method: 'POST', headers: auth });
    expect(replay.status).toBe(202);
    await eventually(async () => (await message(res.body.id)).wamid, { timeoutMs: 20_000, what: 'sent after replay' });
  });
});

describe('circuit breaker', () => {
  it('opens after 10 consecutive failures, holds messages, and recovers', async () => {
    stack.sim.configure({ outage: true });
    const ids: number[] = [];
    for (let i = 0; i < 12; i++) ids.push((await send({ to: recipient(), type: 'text', text: { body: `outage ${i}` } })).body.id);
    await eventually(async () => {
      const r = await json(await fetch(`${stack.app.url}/readyz`));
      return Object.values(r.circuits as Record<string, { state: string }>).some((c) => c.state === 'open');
    }, { timeoutMs: 20_000, what: 'circuit open' });
    const metrics = await (await fetch(`${stack.app.url}/metrics`)).text();
    expect(metrics).toMatch(/wa_router_circuit_open\{channel="\d+"\} 2/);
    // Held, not failed.
    for (const id of ids) expect((await message(id)).status).toBe('pending');
    stack.sim.configure({ outage: false });
    await eventually(async () => (await Promise.all(ids.map(message))).every((m) => m.wamid), { timeoutMs: 40_000, what: 'all sent after recovery' });
    const r = await json(await fetch(`${stack.app.url}/readyz`));
    expect(Object.values(r.circuits as Record<string, { state: string }>).every((c) => c.state === 'closed')).toBe(true);
  });
});
