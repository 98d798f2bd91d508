// The README quick start as a new user tries it: a customer writes (a signed webhook), an agent
// replies with POST /v1/messages; the inbox must then show the reply as the conversation's last
// message and last agent message, and say so on the events stream.
import { expect, it } from 'vitest';
import { API_TOKEN, PHONE_NUMBER_ID } from '../helpers/context.js';
import { eventually, json, postWebhook } from '../helpers/app.js';
import { auth, senderForFile } from '../helpers/sender.js';

const stack = senderForFile({ latencyMs: 2, jitterMs: 2, statusDelayMs: 10 });

const inboxEntry = async (waId: string) => {
  const list = await json(await fetch(`${stack.app.url}/v1/conversations?limit=50`, { headers: auth }));
  return list.data.find((c: { contact: { waId: string } }) => c.contact.waId === waId);
};

/** The events stream's `conversation.updated` for one conversation, read until seen or aborted. */
async function waitForConversationUpdated(conversationId: number, signal: AbortSignal): Promise<boolean> {
  const res = await fetch(`${stack.app.url}/v1/events?access_token=${API_TOKEN}&types=conversation.updated`, { signal });
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      for (const line of buf.split('\n')) {
        if (line.startsWith('data: ') && (JSON.parse(line.slice(6)) as { conversationId?: number }).conversationId === conversationId) return true;
      }
    }
  } catch {
    // aborted
  }
  return false;
}

it('reply → lastMessage and lastAgentMessage in GET /v1/conversations, conversation.updated fired', async () => {
  const customer = '5511987650001';
  const body = JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
      messaging_product: 'whatsapp',
      metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID },
      contacts: [{ profile: { name: 'Quick Start' }, wa_id: customer }],
      messages: [{ from: customer, id: 'wamid.QUICKSTART0001', timestamp: String(Math.floor(Date.now() / 1000) - 5), type: 'text', text: { body: 'Hi, is my order on its way?' } }],
    } }] }],
  });
  expect((await postWebhook(stack.app.url, body)).status).toBe(200);
  // The conversation row is written just before its message (two statements), so wait for both.
  const before = await eventually(async () => {
    const c = await inboxEntry(customer);
    return c?.lastMessage ? c : undefined;
  }, { what: "the customer's message in the inbox" });
  expect(before.lastMessage.body).toBe('Hi, is my order on its way?');
  expect(before.lastAgentMessage).toBeNull();

  const ctrl = new AbortController();
  const updated = waitForConversationUpdated(before.id, ctrl.signal);
  await new Promise((r) => setTimeout(r, 300));
  const res = await fetch(`${stack.app.url}/v1/messages`, { method: 'POST', headers: auth, body: JSON.stringify({ to: customer, type: 'text', text: { body: 'Yes, it left this morning.' } }) });
  expect(res.status).toBe(202);
  const { id } = await json(res);

  const after = await inboxEntry(customer);
  expect(after.id).toBe(before.id);
  expect(after.lastMessage).toMatchObject({ id, direction: 'outbound', body: 'Yes, it left this morning.' });
  expect(after.lastAgentMessage).toMatchObject({ id, direction: 'outbound' });
  const seen = await Promise.race([updated, new Promise<boolean>((r) => setTimeout(() => r(false), 5_000))]);
  ctrl.abort();
  expect(seen).toBe(true);

  // Sent and read by the customer: still the last message, now with its status.
  const read = await eventually(async () => {
    const c = await inboxEntry(customer);
    return c.lastMessage.status === 'read' ? c : null;
  }, { what: 'reply read' });
  expect(read.lastAgentMessage.id).toBe(id);
});
