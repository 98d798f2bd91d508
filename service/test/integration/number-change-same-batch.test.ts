// Regression (issue 14 review, defect 4): `user_changed_user_id` and `user_changed_number` for one
// contact in one batch were applied by one UPDATE that met the contact row twice; Postgres applies
// only one change per row and statement, so in one order the number change was silently lost and
// the conversation stayed on the old number. Moves are now applied one by one, in order.
import { expect, it } from 'vitest';
import { contact, envelope, change, systemMessage, textMessage } from '../fixtures/payloads.js';
import { API_TOKEN } from '../helpers/context.js';
import { appForFile, eventually, json, postWebhook } from '../helpers/app.js';

const stack = appForFile('all');
const auth = { authorization: `Bearer ${API_TOKEN}` };
const T = Math.floor(Date.now() / 1000) - 600;

it.each([
  ['BSUID change listed first', true],
  ['number change listed first', false],
])('moves the conversation to the new number when both changes come in one webhook (%s)', async (_name, userIdFirst) => {
  const [oldNo, newNo] = userIdFirst ? ['5511933338001', '5511933338002'] : ['5511933338011', '5511933338012'];
  const post = async (...messages: ReturnType<typeof textMessage>[]) => {
    expect((await postWebhook(stack.app.url, JSON.stringify(envelope(change({ messages, contacts: [contact({ waId: oldNo })] }))))).status).toBe(200);
  };
  const conversations = async () =>
    ((await json(await fetch(`${stack.app.url}/v1/conversations?limit=100`, { headers: auth }))).data as { contact: { waId: string; userId?: string | null } }[]).filter((c) =>
      [oldNo, newNo].includes(c.contact.waId),
    );
  await post(textMessage({ from: oldNo, timestamp: T - 100 }));
  await eventually(async () => (await conversations()).length === 1, { what: 'the first message in the inbox' });
  const u = systemMessage({ from: oldNo, type: 'user_changed_user_id', userId: `US.${newNo}`, newWaId: oldNo, timestamp: T, id: `wamid.U-${newNo}` });
  const n = systemMessage({ from: oldNo, newWaId: newNo, userId: `US.${newNo}`, timestamp: T, id: `wamid.N-${newNo}` });
  await post(...(userIdFirst ? [u, n] : [n, u]));
  await eventually(async () => (await fetch(`${stack.app.url}/v1/messages?wamid=wamid.N-${newNo}`, { headers: auth })).status === 200, { what: 'the changes stored' });
  // The re-key is the batch's next statement after the messages: wait for it (it never comes when
  // a change is dropped, and this times out).
  await eventually(async () => JSON.stringify((await conversations()).map((c) => c.contact.waId)) === JSON.stringify([newNo]), { what: 'one conversation, on the new number' });
  const rows = (await stack.db.pool.query('SELECT wa_id, user_id FROM contacts WHERE wa_id = ANY($1)', [[oldNo, newNo]])).rows;
  expect(rows).toEqual([{ wa_id: newNo, user_id: `US.${newNo}` }]);
});
