// Regression (issue 14 review, defect 3): a number change whose merge looked for the new number's
// contact just before a concurrent batch committed it (the new number's first message) left the
// conversation split: the re-key saw the contact and silently kept the old number. The re-key now
// reports that it did not move, and the contact is merged then.
import pg from 'pg';
import { expect, it } from 'vitest';
import { contact, envelope, change, systemMessage, textMessage } from '../fixtures/payloads.js';
import { API_TOKEN } from '../helpers/context.js';
import { appForFile, eventually, json, postWebhook } from '../helpers/app.js';

const stack = appForFile('all');
const auth = { authorization: `Bearer ${API_TOKEN}` };
const T = Math.floor(Date.now() / 1000) - 600;
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
const post = async (m: ReturnType<typeof textMessage>, from: string) => {
  expect((await postWebhook(stack.app.url, JSON.stringify(envelope(change({ messages: [m], contacts: [contact({ waId: from })] }))))).status).toBe(200);
};

it('ends in one conversation when the new number\'s first message is stored while the change is being merged', async () => {
  const [oldNo, newNo] = ['5511933339001', '5511933339002'];
  const conversations = async () =>
    ((await json(await fetch(`${stack.app.url}/v1/conversations?limit=100`, { headers: auth }))).data as { unreadCount: number; contact: { waId: string } }[]).filter((c) =>
      [oldNo, newNo].includes(c.contact.waId),
    );
  await post(textMessage({ from: oldNo, timestamp: T - 100, id: 'wamid.RACE-before' }), oldNo);
  await eventually(async () => (await conversations()).length === 1, { what: 'the first message in the inbox' });

  // The window lies between two statements of one transaction; nothing outside the process can
  // hold that transaction there without also blocking the concurrent insert, so the merge's first
  // look-up is delayed in the driver (the stack.app runs in this process).
  const query = pg.Client.prototype.query;
  let merges = 0;
  let racedAfter = Promise.resolve();
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the driver's overloads cannot be forwarded typed
  (pg.Client.prototype as any).query = function (this: pg.Client, ...args: any[]) {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const r = (query as any).apply(this, args);
    if (typeof args[0] === 'string' && args[0].startsWith('SELECT id, wa_id FROM contacts WHERE wa_id = ANY') && merges++ === 0) {
      racedAfter = post(textMessage({ from: newNo, timestamp: T + 5, id: 'wamid.RACE-after' }), newNo);
      return r.then(async (x: unknown) => {
        await racedAfter;
        await eventually(async () => (await stack.db.pool.query('SELECT 1 FROM messages WHERE wamid = $1', ['wamid.RACE-after'])).rowCount === 1, { what: 'the new number\'s message stored' });
        return x;
      });
    }
    return r;
  };
  try {
    await post(systemMessage({ from: oldNo, newWaId: newNo, timestamp: T, id: 'wamid.RACE-change' }), oldNo);
    await eventually(async () => (await stack.db.pool.query('SELECT 1 FROM messages WHERE wamid = $1', ['wamid.RACE-change'])).rowCount === 1, { what: 'the change stored' });
  } finally {
    pg.Client.prototype.query = query;
  }
  expect(merges).toBeGreaterThan(0);
  await wait(500);
  const list = await conversations();
  expect(list.map((c) => c.contact.waId)).toEqual([newNo]);
  expect(list[0]!.unreadCount).toBe(3);
});
