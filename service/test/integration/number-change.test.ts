// Regression (issue 14, defect 6): a number change (system message `user_changed_number`) split
// the conversation when the new number's first message was stored before the change, or came in
// the same batch: a contact for the new number existed, the re-key refused to move the old one,
// and agents' replies kept going to the old number. Every arrival order now ends with one contact
// on the new number and one conversation; a number that already had a contact of its own (a
// previous owner) keeps it apart, as the README promises.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { contact, envelope, change, systemMessage, textMessage } from '../fixtures/payloads.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { startReceiver } from '../helpers/receiver.js';

let db: TestDb;
let sim: GraphSimulator;
let app: RunningApp;
const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };
const T = Math.floor(Date.now() / 1000) - 600;

beforeAll(async () => {
  db = await createTestDb();
  sim = await startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 2, jitterMs: 2, statusDelayMs: 10 } });
  app = await startApp(db, 'all', { GRAPH_API_BASE_URL: sim.url, OUTBOUND_BACKOFF_MS: '50', FORWARD_ALLOW_PRIVATE: 'true' });
});
afterAll(async () => {
  await app?.stop();
  await sim?.close();
  await db?.drop();
});

type Msg = ReturnType<typeof textMessage>;
const post = async (...messages: Msg[]) => {
  const froms = [...new Set(messages.map((m) => m.from).filter((f): f is string => Boolean(f) && messages.some((x) => x.from === f && x.type !== 'system')))];
  const body = JSON.stringify(envelope(change({ messages, contacts: froms.map((waId) => contact({ waId, name: `User ${waId.slice(-4)}` })) })));
  expect((await postWebhook(app.url, body)).status).toBe(200);
};
const stored = (...ids: string[]) =>
  eventually(async () => {
    const all = await Promise.all(ids.map(async (id) => (await fetch(`${app.url}/v1/messages?wamid=${id}`, { headers: auth })).status === 200));
    return all.every(Boolean);
  }, { what: `stored: ${ids.join(', ')}` });

interface Conversation { id: number; unreadCount: number; contact: { waId: string }; route: { state: string; areaId: number | null } }
const conversationsOf = async (...waIds: string[]): Promise<Conversation[]> =>
  ((await json(await fetch(`${app.url}/v1/conversations?limit=100`, { headers: auth }))).data as Conversation[]).filter((c) => waIds.includes(c.contact.waId));
const wamidsOf = async (conversationId: number): Promise<string[]> =>
  (await json(await fetch(`${app.url}/v1/conversations/${conversationId}/messages?limit=100`, { headers: auth }))).data.map((m: { wamid: string }) => m.wamid).sort();

/** The customer's messages: one from the old number, the change, one from the new number. */
function scenario(oldNo: string, newNo: string) {
  return {
    before: textMessage({ from: oldNo, timestamp: T - 100, body: 'from the old number' }),
    change: systemMessage({ from: oldNo, newWaId: newNo, timestamp: T }),
    after: textMessage({ from: newNo, timestamp: T + 5, body: 'from the new number' }),
  };
}

async function expectOneConversation(oldNo: string, newNo: string, s: ReturnType<typeof scenario>): Promise<Conversation> {
  const ids = [s.before.id!, s.change.id!, s.after.id!];
  await stored(...ids);
  const [conv, ...others] = await eventually(async () => {
    const list = await conversationsOf(oldNo, newNo);
    return list.length === 1 && list[0]!.contact.waId === newNo ? list : null;
  }, { what: `one conversation on ${newNo}` }).catch(async (e: Error) => {
    throw new Error(`${e.message}: ${JSON.stringify(await conversationsOf(oldNo, newNo))}`);
  });
  expect(others).toEqual([]);
  expect(await wamidsOf(conv!.id)).toEqual([...ids].sort());
  expect(conv!.unreadCount).toBe(3);
  // The inbox's search finds it by the new number, whichever way the contacts were merged.
  const found = (await json(await fetch(`${app.url}/v1/conversations?q=${newNo}`, { headers: auth }))).data as Conversation[];
  expect(found.map((c) => c.id)).toEqual([conv!.id]);
  return conv!;
}

describe('a customer who changes number, in every arrival order', () => {
  it('change first, then the new number writes', async () => {
    const s = scenario('5511933330001', '5511933330002');
    await post(s.before);
    await stored(s.before.id!);
    await post(s.change);
    await stored(s.change.id!);
    await post(s.after);
    await expectOneConversation('5511933330001', '5511933330002', s);
  });

  it("the new number's message stored first, then the change", async () => {
    const s = scenario('5511933330011', '5511933330012');
    await post(s.before);
    await post(s.after);
    await stored(s.before.id!, s.after.id!);
    await post(s.change);
    const conv = await expectOneConversation('5511933330011', '5511933330012', s);

    // An agent's reply now goes to the new number and joins that same conversation.
    const res = await fetch(`${app.url}/v1/messages`, { method: 'POST', headers: auth, body: JSON.stringify({ to: '5511933330012', type: 'text', text: { body: 'got your new number' } }) });
    expect(res.status).toBe(202);
    const { id } = await json(res);
    const sent = await eventually(async () => sim.sent.find((m) => m.body.text && (m.body.text as { body: string }).body === 'got your new number'), { what: 'reply sent' });
    expect(sent.to).toBe('5511933330012');
    expect((await json(await fetch(`${app.url}/v1/messages/${id}`, { headers: auth }))).conversationId).toBe(conv.id);
    expect(await conversationsOf('5511933330011', '5511933330012')).toHaveLength(1);
  });

  it("keeps the new number's assignment and moves its deliveries when the conversations merge", async () => {
    const receiver = await startReceiver();
    try {
      const area = await json(await fetch(`${app.url}/v1/areas`, { method: 'POST', headers: auth, body: JSON.stringify({ name: 'Support', webhookUrl: receiver.url }) }));
      receiver.secrets.push(area.secret);
      const s = scenario('5511933330051', '5511933330052');
      await post(s.before);
      await post(s.after);
      await stored(s.before.id!, s.after.id!);
      const [early] = await conversationsOf('5511933330052');
      expect((await fetch(`${app.url}/v1/conversations/${early!.id}/assign`, { method: 'POST', headers: auth, body: JSON.stringify({ areaId: area.id }) })).status).toBe(200);
      await post(s.change);
      const conv = await expectOneConversation('5511933330051', '5511933330052', s);
      expect(conv.route).toMatchObject({ state: 'assigned', areaId: area.id });
      const deliveries = (await json(await fetch(`${app.url}/v1/areas/${area.id}/deliveries`, { headers: auth }))).data as { conversationId: number }[];
      expect(deliveries.length).toBeGreaterThan(0);
      expect(deliveries.map((d) => d.conversationId)).toEqual(deliveries.map(() => conv.id));
    } finally {
      await receiver.close();
    }
  });

  it.each([
    ['change listed first', (s: ReturnType<typeof scenario>) => [s.change, s.after]],
    ['new number listed first', (s: ReturnType<typeof scenario>) => [s.after, s.change]],
  ])('both in one batch (%s)', async (name, order) => {
    const [oldNo, newNo] = name.startsWith('change') ? ['5511933330021', '5511933330022'] : ['5511933330031', '5511933330032'];
    const s = scenario(oldNo, newNo);
    await post(s.before);
    await stored(s.before.id!);
    await post(...order(s));
    await expectOneConversation(oldNo, newNo, s);
  });
});

it('a number change onto a number that already has a contact of its own keeps the two apart', async () => {
  const [oldNo, newNo] = ['5511933330041', '5511933330042'];
  // The number's previous owner wrote a day before the change.
  const previousOwner = textMessage({ from: newNo, timestamp: T - 86_400, body: 'previous owner' });
  const s = scenario(oldNo, newNo);
  await post(previousOwner);
  await post(s.before);
  await stored(previousOwner.id!, s.before.id!);
  await post(s.change);
  await stored(s.change.id!);
  await new Promise((r) => setTimeout(r, 300));
  const list = await conversationsOf(oldNo, newNo);
  expect(list.map((c) => c.contact.waId).sort()).toEqual([oldNo, newNo]);
  const mover = list.find((c) => c.contact.waId === oldNo)!;
  const owner = list.find((c) => c.contact.waId === newNo)!;
  expect(await wamidsOf(mover.id)).toEqual([s.before.id!, s.change.id!].sort());
  expect(await wamidsOf(owner.id)).toEqual([previousOwner.id!]);
});
