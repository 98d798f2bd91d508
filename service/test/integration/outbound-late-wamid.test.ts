// Meta's word on a send that comes late or out of order, against the Graph API simulator and
// real Postgres and Redis: the wamid of a message the sender had given up on, and statuses
// that arrive before the answer to the send. Counted at the simulator: one POST per message.
import { beforeEach, describe, expect, it } from 'vitest';
import { API_TOKEN } from '../helpers/context.js';
import { eventually, json } from '../helpers/app.js';
import { openSse } from '../helpers/events.js';
import { auth, messageOf, recipients, senderForFile, sendText } from '../helpers/sender.js';

const stack = senderForFile({ latencyMs: 2, jitterMs: 2 }, {
  // One attempt and a short grace: an unknown outcome becomes `failed` within about 2-3 s. The timeout
  // stays well above the 250 ms answer the second test holds back, so a loaded host does not turn
  // that slow answer into a lost one.
  GRAPH_TIMEOUT_MS: '1000',
  OUTBOUND_UNKNOWN_OUTCOME_GRACE_MS: '1000',
  OUTBOUND_ATTEMPTS: '1',
  OUTBOUND_BACKOFF_MS: '50',
  WORKER_LOCK_MS: '2000',
});

const send = (to: string, body: string) => sendText(stack.app.url, to, body);
const message = (id: number) => messageOf(stack.app.url, id);
const posts = (id: number) => stack.sim.sent.filter((s) => s.body.biz_opaque_callback_data === `wr:${id}`).length;
const recipient = recipients('55219');

/** message.status events from the realtime stream, collected until `stop`. */
function statusEvents() {
  const sse = openSse(stack.app.url, `?access_token=${API_TOKEN}&types=message.status`);
  return { get events() { return sse.events.map((e) => e.data as { messageId: number; status: string }); }, stop: () => sse.close() };
}

beforeEach(() => {
  stack.sim.configure({ dropResponseRate: 0, responseDelayMs: 0, statusDelayMs: 20, statusCallbackData: true });
});

describe('a message the sender gave up on, which Meta had accepted', () => {
  it('is reopened by its late statuses, ends read, and its dead letter does not send it again', async () => {
    stack.sim.configure({ dropResponseRate: 1, statusDelayMs: 6_000 });
    const stream = statusEvents();
    await new Promise((r) => setTimeout(r, 300));
    const id = await send(recipient(), 'answer lost, statuses late');
    await eventually(async () => posts(id) === 1, { what: 'accepted by the simulator' });
    stack.sim.configure({ dropResponseRate: 0 });
    const failed = await eventually(async () => {
      const v = await message(id);
      return v.status === 'failed' ? v : null;
    }, { timeoutMs: 5_500, what: 'failed: outcome unknown, no status yet' });
    expect(failed.wamid ?? null).toBeNull();
    const read = await eventually(async () => {
      const v = await message(id);
      return v.status === 'read' ? v : null;
    }, { timeoutMs: 20_000, what: 'read once the late statuses came' });
    expect(read.wamid).toBe(stack.sim.sent.find((s) => s.body.biz_opaque_callback_data === `wr:${id}`)!.wamid);
    expect(read.error ?? null).toBeNull();
    await eventually(async () => stream.events.some((e) => e.messageId === id && e.status === 'read'), { what: 'read event' });
    await stream.stop();
    const ours = stream.events.filter((e) => e.messageId === id).map((e) => e.status);
    expect(ours[0]).toBe('failed');
    expect(ours).toContain('read');

    const dl = await eventually(async () => {
      const list = await json(await fetch(`${stack.app.url}/v1/dead-letters`, { headers: auth }));
      return list.items.find((i: { data: { messageId: number } }) => i.data.messageId === id);
    }, { what: 'dead letter' });
    const replay = await fetch(`${stack.app.url}/v1/dead-letters/${encodeURIComponent(dl.id)}/replay`, { method: 'POST', headers: auth });
    expect(replay.status).toBe(202);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(posts(id)).toBe(1);
    expect((await message(id)).status).toBe('read');
  });
});

describe('statuses before the answer to the send', () => {
  it('without biz_opaque_callback_data, they are applied when the answer brings the wamid', async () => {
    stack.sim.configure({ responseDelayMs: 250, statusDelayMs: 1, statusCallbackData: false });
    const id = await send(recipient(), 'statuses first');
    const m = await eventually(async () => {
      const v = await message(id);
      return v.status === 'read' ? v : null;
    }, { timeoutMs: 10_000, what: 'read' });
    expect(m.wamid).toMatch(/^wamid\./);
    expect(posts(id)).toBe(1);
  });
});
