// One inbound message of every type in Meta's messages webhook reference.
import { PHONE_NUMBER_ID } from './context.js';

/** A messages webhook body from one customer (named "Customer") to the test number. */
export function customerWebhook(from: string, messages: Record<string, unknown>[]): string {
  return JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
      messaging_product: 'whatsapp',
      metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID },
      contacts: [{ profile: { name: 'Customer' }, wa_id: from }],
      messages,
    } }] }],
  });
}

/** One text message from `from`, sent now. */
export const customerText = (from: string, id: string, body: string): string =>
  customerWebhook(from, [{ from, id, timestamp: String(Math.floor(Date.now() / 1000)), type: 'text', text: { body } }]);
export const FROM = '16505551234';
export const base = (id: string, type: string, extra: Record<string, unknown>) => ({ from: FROM, id, timestamp: '1749416383', type, ...extra });

export const allTypeMessages = (prefix = 'wamid.') => [
  base(prefix + 'text', 'text', { text: { body: 'Does it come in another color?' } }),
  base(prefix + 'image', 'image', { image: { caption: 'look', mime_type: 'image/jpeg', sha256: 'abc=', id: '1003383421387256' } }),
  base(prefix + 'voice', 'audio', { audio: { mime_type: 'audio/ogg; codecs=opus', sha256: 'def=', id: '1003383421387257', voice: true } }),
  base(prefix + 'video', 'video', { video: { mime_type: 'video/mp4', sha256: 'ghi=', id: '1003383421387258' } }),
  base(prefix + 'doc', 'document', { document: { caption: 'invoice', filename: 'invoice.pdf', mime_type: 'application/pdf', sha256: 'jkl=', id: '1003383421387259' } }),
  base(prefix + 'sticker', 'sticker', { sticker: { mime_type: 'image/webp', sha256: 'mno=', id: '1003383421387260', animated: false } }),
  base(prefix + 'location', 'location', { location: { latitude: 37.483307, longitude: 122.148981, name: 'Pablo Morales', address: '1 Hacker Way, Menlo Park, CA 94025' } }),
  base(prefix + 'contacts', 'contacts', { contacts: [{ name: { formatted_name: 'Barbara J. Johnson', first_name: 'Barbara' }, phones: [{ phone: '+16505559999', type: 'MOBILE' }] }] }),
  base(prefix + 'button_reply', 'interactive', { interactive: { type: 'button_reply', button_reply: { id: 'unique-postback-id', title: 'Yes' } } }),
  base(prefix + 'list_reply', 'interactive', { interactive: { type: 'list_reply', list_reply: { id: 'list-row-id', title: 'Support', description: 'Talk to us' } } }),
  base(prefix + 'button', 'button', { context: { from: '15550783881', id: prefix + 'template' }, button: { text: 'Unsubscribe', payload: 'UNSUB' } }),
  base(prefix + 'reaction', 'reaction', { reaction: { message_id: prefix + 'text', emoji: '\u{1F600}' } }),
  base(prefix + 'unreact', 'reaction', { reaction: { message_id: prefix + 'text' } }),
  base(prefix + 'order', 'order', { order: { catalog_id: '123', text: 'please deliver', product_items: [{ product_retailer_id: 'sku-1', quantity: 2, item_price: 10, currency: 'USD' }] } }),
  base(prefix + 'system', 'system', { system: { body: 'User A changed from 1650 to 1651', wa_id: '16505551111', type: 'user_changed_number' } }),
  base(prefix + 'unsupported', 'unsupported', { errors: [{ code: 131051, title: 'Message type unknown', message: 'Message type unknown', error_data: { details: 'Message type is currently not supported.' } }] }),
  base(prefix + 'referral', 'text', { text: { body: 'from the ad' }, referral: { source_url: 'https://fb.me/x', source_id: 'ADID', source_type: 'ad', headline: 'Sale', body: 'Now', media_type: 'image', ctwa_clid: 'clid' } }),
  base(prefix + 'reply', 'text', { text: { body: 'yes, this one' }, context: { from: '15550783881', id: prefix + 'previous', forwarded: true } }),
];
