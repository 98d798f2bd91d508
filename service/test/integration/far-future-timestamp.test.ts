// Regression (issue 14 review, defect 2): a timestamp past year 9999 parsed as a valid date that
// Postgres refuses, so one such message made its whole webhook fail and lost its valid neighbours.
// It is now an invalid item: the neighbours are stored, the body goes the dead-letter way.
import { expect, it } from 'vitest';
import { inboundEnvelope, textMessage } from '../fixtures/payloads.js';
import { API_TOKEN } from '../helpers/context.js';
import { appForFile, eventually, json, postWebhook } from '../helpers/app.js';

const stack = appForFile('all', { INBOUND_ATTEMPTS: '2' });
const auth = { authorization: `Bearer ${API_TOKEN}` };

it('stores the valid message of a webhook beside one with a timestamp in year 11476', async () => {
  const ok = textMessage({ from: '5511944441001', id: 'wamid.LIVE-OK' });
  const bad = textMessage({ from: '5511944441002', id: 'wamid.LIVE-BAD', timestamp: 300_000_000_000 });
  expect((await postWebhook(stack.app.url, JSON.stringify(inboundEnvelope([ok, bad])))).status).toBe(200);
  const conv = await eventually(async () => {
    const list = (await json(await fetch(`${stack.app.url}/v1/conversations?limit=50`, { headers: auth }))).data as { id: number; unreadCount: number; contact: { waId: string } }[];
    return list.find((c) => c.contact.waId === '5511944441001' && c.unreadCount === 1);
  }, { timeoutMs: 20_000, intervalMs: 200, what: 'the valid message in the inbox' });
  const page = await json(await fetch(`${stack.app.url}/v1/conversations/${conv.id}/messages?limit=10`, { headers: auth }));
  expect(page.data.map((m: { wamid: string }) => m.wamid)).toEqual(['wamid.LIVE-OK']);
  expect((await stack.db.pool.query("SELECT 1 FROM messages WHERE wamid = 'wamid.LIVE-BAD'")).rowCount).toBe(0);
});
