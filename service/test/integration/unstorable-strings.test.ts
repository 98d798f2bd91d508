// Regression (issue 14, defect 8): a NUL or a lone surrogate in any string of a webhook failed the
// event's write, so every valid message of the same webhook was lost with it. Now such strings are
// made storable (NUL stripped, lone surrogate → U+FFFD) on the live, echo and history paths.
import { expect, it } from 'vitest';
import { contact, echoChange, echoMessage, envelope, historyChange, historyMessage, inboundEnvelope, textMessage } from '../fixtures/payloads.js';
import { API_TOKEN } from '../helpers/context.js';
import { appForFile, eventually, json, postWebhook } from '../helpers/app.js';

const stack = appForFile('all');
const auth = { authorization: `Bearer ${API_TOKEN}` };


const message = async (wamid: string) => {
  const res = await fetch(`${stack.app.url}/v1/messages?wamid=${encodeURIComponent(wamid)}`, { headers: auth });
  return res.status === 200 ? json(res) : null;
};

it('stores messages carrying NUL characters and lone surrogates beside valid ones, visible in the inbox', async () => {
  const from = '5511977770001';
  const valid = textMessage({ from, body: 'plain and valid' });
  const nul = textMessage({ from, body: 'before\u0000after' });
  const lone = textMessage({ from, body: 'high \ud800 low \udc00 pair \ud83d\ude00' });
  // JSON.stringify writes these characters as the escapes Meta's JSON would carry.
  const body = JSON.stringify(inboundEnvelope([valid, nul, lone], { contacts: [contact({ waId: from, name: 'Nul\u0000 Name' })] }));
  expect(body).toContain('\\u0000');
  expect(body).toContain('\\ud800');
  // A neighbour in the same moment (likely the same batch) must not be blocked either.
  const neighbour = textMessage({ from: '5511977770002', body: 'neighbour' });
  const results = await Promise.all([postWebhook(stack.app.url, body), postWebhook(stack.app.url, JSON.stringify(inboundEnvelope([neighbour])))]);
  expect(results.map((r) => r.status)).toEqual([200, 200]);

  const stored = await eventually(async () => {
    const all = await Promise.all([valid, nul, lone, neighbour].map((m) => message(m.id!)));
    return all.every(Boolean) ? all : null;
  }, { timeoutMs: 20_000, what: 'all four messages in the API' });
  expect(stored.map((m) => m.body)).toEqual(['plain and valid', 'beforeafter', 'high \ufffd low \ufffd pair \ud83d\ude00', 'neighbour']);

  const list = await json(await fetch(`${stack.app.url}/v1/conversations?limit=50`, { headers: auth }));
  const conv = list.data.find((c: { contact: { waId: string } }) => c.contact.waId === from);
  expect(conv).toMatchObject({ unreadCount: 3, contact: { profileName: 'Nul Name' } });

  // The raw event is kept storable too: it casts to jsonb, which refuses \u0000.
  const raw = await stack.db.pool.query("SELECT count(*)::int AS n FROM inbound_events WHERE payload::text LIKE '%before%' AND payload::jsonb IS NOT NULL");
  expect(raw.rows[0].n).toBe(1);
  const metrics = await (await fetch(`${stack.app.url}/metrics`)).text();
  expect(Number(/^wa_router_unstorable_strings_repaired_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(3);
});

it('stores echoes and history messages carrying them too', async () => {
  const to = '5511977770003';
  const echo = echoMessage(textMessage({ from: to, body: 'echo\u0000 \udfff' }), { to });
  const hist = textMessage({ from: to, body: 'history\u0000 \ud801', timestamp: 1739230955 });
  const histOk = textMessage({ from: to, body: 'history fine', timestamp: 1739230956 });
  expect((await postWebhook(stack.app.url, JSON.stringify(envelope(echoChange({ echoes: [echo] }))))).status).toBe(200);
  const historyBody = JSON.stringify(envelope(historyChange({ threads: [{ id: to, messages: [historyMessage(hist), historyMessage(histOk)] }] })));
  expect((await postWebhook(stack.app.url, historyBody)).status).toBe(200);
  const got = await eventually(async () => {
    const all = await Promise.all([echo.id, hist.id!, histOk.id!].map((id) => message(id)));
    return all.every(Boolean) ? all : null;
  }, { timeoutMs: 20_000, what: 'echo and history messages in the API' });
  expect(got.map((m) => m.body)).toEqual(['echo \ufffd', 'history \ufffd', 'history fine']);
});
