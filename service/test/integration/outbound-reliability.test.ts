// Sends that go wrong after Meta may have the message, against the Graph API simulator and
// real Postgres and Redis: an answer that never comes (timeout, reset), retries that run out,
// a database that cannot take the wamid. Counted at the simulator: one accepted POST per message.
import { Queue } from 'bullmq';
import { beforeEach, describe, expect, it } from 'vitest';
import { API_TOKEN } from '../helpers/context.js';
import { eventually, json } from '../helpers/app.js';
import { openSse } from '../helpers/events.js';
import { auth, messageOf, recipients, senderForFile, sendText } from '../helpers/sender.js';

const GRACE_MS = 6_000;
const stack = senderForFile({ latencyMs: 2, jitterMs: 2, statusDelayMs: 20 }, {
  GRAPH_TIMEOUT_MS: '400',
  OUTBOUND_UNKNOWN_OUTCOME_GRACE_MS: String(GRACE_MS),
  OUTBOUND_ATTEMPTS: '3',
  OUTBOUND_BACKOFF_MS: '50',
  WORKER_LOCK_MS: '2000',
});

const send = (to: string, body: string) => sendText(stack.app.url, to, body);
const message = (id: number) => messageOf(stack.app.url, id);
const posts = (id: number) => stack.sim.acceptedByCallback().get(`wr:${id}`) ?? 0;
const metric = async (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(await (await fetch(`${stack.app.url}/metrics`)).text())?.[1] ?? NaN);
/** message.status events from the realtime stream, collected until `stop`. */
function statusEvents() {
  const sse = openSse(stack.app.url, `?access_token=${API_TOKEN}&types=message.status`);
  return { get events() { return sse.events.map((e) => e.data as { messageId: number; status: string; error?: { code: number | null } }); }, stop: () => sse.close() };
}
const recipient = recipients('55218');

beforeEach(() => {
  stack.sim.configure({ dropResponseRate: 0, dropMode: 'hang', statusDelayMs: 20, failFirst: {} });
});

describe('an unknown outcome is never re-sent blindly', () => {
  it.each(['hang', 'reset'] as const)('graph timeout after accepting (%s): one POST per message, linked by the status webhook', async (mode) => {
    const before = await metric('wa_router_outbound_unknown_outcome_total');
    stack.sim.configure({ dropResponseRate: 1, dropMode: mode });
    const id = await send(recipient(), `lost answer ${mode}`);
    await eventually(async () => posts(id) === 1, { what: 'accepted by the simulator' });
    stack.sim.configure({ dropResponseRate: 0 });
    const m = await eventually(async () => {
      const v = await message(id);
      return v.status === 'read' ? v : null;
    }, { what: 'read' });
    expect(m.wamid).toBe(stack.sim.sent.find((s) => s.body.biz_opaque_callback_data === `wr:${id}`)!.wamid);
    await eventually(async () => (await metric('wa_router_outbound_unknown_outcome_total')) > before, { what: 'unknown outcome counted' });
    // Past the grace a careless sender would have called again.
    await new Promise((r) => setTimeout(r, GRACE_MS + 1_000));
    expect(posts(id)).toBe(1);
  });

  it('a status webhook arriving seconds after our timeout still prevents the re-send', async () => {
    stack.sim.configure({ dropResponseRate: 1, statusDelayMs: 3_000 });
    const id = await send(recipient(), 'slow status');
    await eventually(async () => posts(id) === 1, { what: 'accepted by the simulator' });
    stack.sim.configure({ dropResponseRate: 0 });
    await eventually(async () => (await message(id)).wamid, { timeoutMs: 10_000, what: 'wamid linked by the late status' });
    await new Promise((r) => setTimeout(r, GRACE_MS + 1_000));
    expect(posts(id)).toBe(1);
    expect((await message(id)).status).toBe('read');
  });

  it('no status webhook within the grace: sent again after it, not before; the next message waits without spinning', async () => {
    stack.sim.configure({ dropResponseRate: 1, statusDelayMs: 60_000 });
    const to = recipient();
    const t0 = Date.now();
    const id = await send(to, 'truly lost');
    await eventually(async () => posts(id) === 1, { what: 'accepted by the simulator' });
    stack.sim.configure({ dropResponseRate: 0 });
    const next = await send(to, 'after the lost one');
    await eventually(async () => posts(id) === 2, { timeoutMs: GRACE_MS + 8_000, what: 'sent again after the grace' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(GRACE_MS);
    const second = stack.sim.sent.filter((s) => s.body.biz_opaque_callback_data === `wr:${id}`)[1]!;
    await eventually(async () => (await message(id)).wamid === second.wamid, { what: 'the answered wamid saved' });
    await eventually(async () => posts(next) === 1, { what: 'the next message sent after it' });
    expect(stack.sim.sent.filter((s) => s.to === to).map((s) => (s.body.text as { body: string }).body)).toEqual(['truly lost', 'truly lost', 'after the lost one']);
    // It waited ~6 s behind the earlier message: checked with backoff (about 30 runs),
    // not every 50 ms (over 100).
    const queue = new Queue(`outbound-${(await message(next)).channelId}`, { connection: { url: stack.app.app.config.REDIS_URL! }, prefix: stack.app.app.config.QUEUE_PREFIX });
    try {
      const job = await queue.getJob(`msg-${next}`);
      expect(job!.attemptsStarted).toBeGreaterThan(3);
      expect(job!.attemptsStarted).toBeLessThan(45);
    } finally {
      await queue.close();
    }
  });
});

describe('retries exhausted', () => {
  it('the message becomes failed with its error, the next one to the customer is sent; replay sends it', async () => {
    const to = recipient();
    stack.sim.configure({ failFirst: { [to]: { code: 131000, times: 3 } } });
    const stream = statusEvents();
    await new Promise((r) => setTimeout(r, 300));
    const first = await send(to, 'will run out of retries');
    const next = await send(to, 'must not wait forever');
    const failed = await eventually(async () => {
      const v = await message(first);
      return v.status === 'failed' ? v : null;
    }, { timeoutMs: 20_000, what: 'failed after the retries' });
    expect(failed.error).toMatchObject({ code: 131000, title: expect.stringContaining('Something went wrong') });
    const sent = await eventually(async () => {
      const v = await message(next);
      return v.wamid ? v : null;
    }, { timeoutMs: 10_000, what: 'the next message sent' });
    expect(stack.sim.sent.filter((s) => s.to === to).map((s) => (s.body.text as { body: string }).body)).toEqual(['must not wait forever']);
    expect(sent.wamid).toMatch(/^wamid\./);

    const dl = await eventually(async () => {
      const list = await json(await fetch(`${stack.app.url}/v1/dead-letters`, { headers: auth }));
      return list.items.find((i: { data: { messageId: number } }) => i.data.messageId === first);
    }, { what: 'dead letter' });
    const replay = await fetch(`${stack.app.url}/v1/dead-letters/${encodeURIComponent(dl.id)}/replay`, { method: 'POST', headers: auth });
    expect(replay.status).toBe(202);
    const m = await eventually(async () => {
      const v = await message(first);
      return v.wamid ? v : null;
    }, { timeoutMs: 10_000, what: 'sent after replay' });
    expect(m.error ?? null).toBeNull();
    expect(posts(first)).toBe(1);
    await eventually(async () => stream.events.some((e) => e.messageId === first && e.status === 'accepted'), { what: 'accepted event' });
    await stream.stop();
    // Listeners saw it fail with the error, come back as pending on replay, then leave.
    const ours = stream.events.filter((e) => e.messageId === first).map((e) => e.status);
    expect(ours.slice(0, 2)).toEqual(['failed', 'pending']);
    expect(stream.events.find((e) => e.messageId === first && e.status === 'failed')!.error).toMatchObject({ code: 131000 });
  });
});

describe('a wamid Meta returned is never lost to a database error', () => {
  it('holds the wamid while Postgres refuses it, saves it on the retry, sends once', async () => {
    // A real Postgres error on saving the wamid, for this message only, for a while.
    await stack.db.pool.query(`CREATE FUNCTION refuse_wamid() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.body = 'database blip' AND NEW.wamid IS NOT NULL THEN RAISE EXCEPTION 'simulated outage'; END IF; RETURN NEW; END $$`);
    await stack.db.pool.query('CREATE TRIGGER refuse_wamid BEFORE UPDATE OF wamid ON messages FOR EACH ROW EXECUTE FUNCTION refuse_wamid()');
    try {
      stack.sim.configure({ statusDelayMs: 60_000 });
      const id = await send(recipient(), 'database blip');
      await eventually(async () => posts(id) === 1, { what: 'accepted by the simulator' });
      // Longer than the grace and the retries: a sender that dropped the wamid would call again.
      await new Promise((r) => setTimeout(r, GRACE_MS + 2_000));
      expect((await message(id)).wamid).toBeNull();
      await stack.db.pool.query('DROP TRIGGER refuse_wamid ON messages');
      const m = await eventually(async () => {
        const v = await message(id);
        return v.wamid ? v : null;
      }, { timeoutMs: 10_000, what: 'held wamid saved' });
      expect(m.wamid).toBe(stack.sim.sent.find((s) => s.body.biz_opaque_callback_data === `wr:${id}`)!.wamid);
      expect(posts(id)).toBe(1);
    } finally {
      await stack.db.pool.query('DROP TRIGGER IF EXISTS refuse_wamid ON messages');
      await stack.db.pool.query('DROP FUNCTION IF EXISTS refuse_wamid()');
    }
  });
});
