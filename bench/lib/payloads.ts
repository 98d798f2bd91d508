// Webhook bodies for the benchmarks: realistic text messages padded to a given size.
import { createHmac } from 'node:crypto';
import { APP_SECRET, PHONE_NUMBER_ID } from './stack.js';

/** Shaped like Meta's since April 2026: the sender's number and its business-scoped user id. */
export function textWebhook(i: number, opts: { size?: number; contacts?: number; prefix?: string } = {}): string {
  const contact = `5511${String(i % (opts.contacts ?? 500)).padStart(9, '0')}`;
  const userId = `BR.${String(7_000_000_000_000 + (i % (opts.contacts ?? 500)))}`;
  const build = (text: string) =>
    JSON.stringify({
      object: 'whatsapp_business_account',
      entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
        messaging_product: 'whatsapp',
        metadata: { display_phone_number: '15550783881', phone_number_id: PHONE_NUMBER_ID },
        contacts: [{ profile: { name: `Customer ${i % (opts.contacts ?? 500)}` }, wa_id: contact, user_id: userId }],
        messages: [{ from: contact, from_user_id: userId, id: `wamid.${opts.prefix ?? 'BENCH'}${String(i).padStart(10, '0')}`, timestamp: String(1_760_000_000 + i), type: 'text', text: { body: text } }],
      } }] }],
    });
  const base = build('');
  const pad = Math.max(0, (opts.size ?? 1536) - base.length);
  return build('Olá! Gostaria de saber o status do meu pedido. '.repeat(Math.ceil(pad / 48)).slice(0, pad));
}

export const signature = (body: string | Buffer) => 'sha256=' + createHmac('sha256', APP_SECRET).update(body).digest('hex');
