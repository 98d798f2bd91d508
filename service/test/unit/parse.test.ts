// Every inbound type of Meta's messages webhook reference, normalized.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkEnvelope, EnvelopeError, parseEvent } from '../../src/whatsapp/parse.js';
import { allTypeMessages, base, FROM } from '../helpers/meta-samples.js';

const messages = allTypeMessages();

const envelope = {
  object: 'whatsapp_business_account',
  entry: [
    {
      id: '102290129340398',
      changes: [
        { field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550783881', phone_number_id: '106540352242922' }, contacts: [{ profile: { name: 'Sheena Nelson' }, wa_id: FROM }], messages } },
        { field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550783881', phone_number_id: '106540352242922' }, statuses: [{ id: 'wamid.out', status: 'failed', timestamp: '1749416400', recipient_id: FROM, errors: [{ code: 131047, title: 'Re-engagement message', message: 'Re-engagement message', error_data: { details: 'More than 24 hours have passed.' } }] }] } },
      ],
    },
    { id: '102290129340399', changes: [{ field: 'history', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550783882', phone_number_id: '106540352242923' }, history: [] } }] },
  ],
};

describe('parseEvent', () => {
  const parsed = parseEvent(envelope);
  const byId = new Map(parsed.messages.map((m) => [m.wamid, m]));

  it('keeps every message of every change, with the contact name', () => {
    expect(parsed.messages).toHaveLength(messages.length);
    expect(parsed.invalid).toEqual([]);
    expect(byId.get('wamid.text')).toMatchObject({ type: 'text', body: 'Does it come in another color?', profileName: 'Sheena Nelson', from: FROM });
    expect(byId.get('wamid.text')!.timestamp.toISOString()).toBe('2025-06-08T20:59:43.000Z');
  });

  it('extracts media, location, contacts and interactive fields', () => {
    expect(byId.get('wamid.image')).toMatchObject({ mediaId: '1003383421387256', mediaMimeType: 'image/jpeg', body: 'look' });
    expect(byId.get('wamid.voice')).toMatchObject({ mediaId: '1003383421387257', mediaMimeType: 'audio/ogg; codecs=opus' });
    expect(byId.get('wamid.doc')).toMatchObject({ mediaFilename: 'invoice.pdf', body: 'invoice' });
    expect(byId.get('wamid.sticker')).toMatchObject({ mediaId: '1003383421387260' });
    expect(byId.get('wamid.location')).toMatchObject({ latitude: 37.483307, longitude: 122.148981, body: 'Pablo Morales, 1 Hacker Way, Menlo Park, CA 94025' });
    expect(byId.get('wamid.contacts')!.body).toBe('Barbara J. Johnson');
    expect(byId.get('wamid.button_reply')).toMatchObject({ interactiveReplyId: 'unique-postback-id', body: 'Yes' });
    expect(byId.get('wamid.list_reply')).toMatchObject({ interactiveReplyId: 'list-row-id', body: 'Support' });
    expect(byId.get('wamid.button')).toMatchObject({ interactiveReplyId: 'UNSUB', body: 'Unsubscribe', replyToWamid: 'wamid.template' });
    expect(byId.get('wamid.order')!.body).toBe('please deliver');
    expect(byId.get('wamid.system')!.body).toContain('changed');
  });

  it('tells a reaction from its removal (no emoji)', () => {
    expect(byId.get('wamid.reaction')).toMatchObject({ reactionToWamid: 'wamid.text', reactionEmoji: '\u{1F600}' });
    expect(byId.get('wamid.unreact')).toMatchObject({ reactionToWamid: 'wamid.text', reactionEmoji: null });
  });

  it('keeps referral and reply context', () => {
    expect(byId.get('wamid.referral')!.referral).toMatchObject({ source_type: 'ad', ctwa_clid: 'clid' });
    expect(byId.get('wamid.reply')).toMatchObject({ replyToWamid: 'wamid.previous', forwarded: true });
    expect(byId.get('wamid.unsupported')!.raw).toHaveProperty('errors');
  });

  it('parses statuses with their error', () => {
    expect(parsed.statuses).toEqual([
      expect.objectContaining({ wamid: 'wamid.out', status: 'failed', rank: 9, recipientId: FROM, errorCode: 131047, errorTitle: 'Re-engagement message', errorDetails: 'More than 24 hours have passed.' }),
    ]);
  });

  it('hands other fields on, with their phone number', () => {
    expect(parsed.fields.sort()).toEqual(['history', 'messages']);
    expect(parsed.other).toEqual([expect.objectContaining({ field: 'history', wabaId: '102290129340399' })]);
    expect(parsed.phoneNumberIds.sort()).toEqual(['106540352242922', '106540352242923']);
  });

  it('reports items it cannot key on, and keeps the rest', () => {
    const bad = parseEvent({
      object: 'whatsapp_business_account',
      entry: [{ id: '1', changes: [{ field: 'messages', value: { metadata: { phone_number_id: '1' }, messages: [{ from: FROM, type: 'text', timestamp: '1', text: { body: 'no id' } }, base('wamid.ok', 'text', { text: { body: 'ok' } })], statuses: [{ id: 'wamid.x', timestamp: '1' }] } }] }],
    });
    expect(bad.messages.map((m) => m.wamid)).toEqual(['wamid.ok']);
    expect(bad.invalid).toEqual([
      { path: 'entry[0].changes[0].value.messages[0]', reason: 'message lacks id' },
      { path: 'entry[0].changes[0].value.statuses[0]', reason: 'status lacks status' },
    ]);
  });
});

describe('business-scoped user ids (2026)', () => {
  const example = (name: string) => parseEvent(JSON.parse(fs.readFileSync(new URL(`../fixtures/docs-examples/${name}.json`, import.meta.url), 'utf8')));

  it('keys a username user without a phone number on the BSUID, with name and username', () => {
    const p = example('bsuid-text');
    expect(p.invalid).toEqual([]);
    expect(p.messages).toEqual([expect.objectContaining({ from: 'US.13491208655302741918', fromUserId: 'US.13491208655302741918', profileName: 'Sheena Nelson', body: 'Hi, I found you on Instagram' })]);
    expect(p.contacts.get('US.13491208655302741918')).toEqual({ name: 'Sheena Nelson', userId: 'US.13491208655302741918', username: '@sheena.nelson' });
  });

  it('keeps the phone number as the key when Meta sends both, with the BSUID beside it', () => {
    const p = parseEvent({
      object: 'whatsapp_business_account',
      entry: [{ id: '1', changes: [{ field: 'messages', value: { metadata: { phone_number_id: '1' }, contacts: [{ profile: { name: 'Ana' }, wa_id: FROM, user_id: 'BR.8812' }], messages: [{ from: FROM, from_user_id: 'BR.8812', id: 'wamid.both', timestamp: '1749416383', type: 'text', text: { body: 'oi' } }] } }] }],
    });
    expect(p.messages[0]).toMatchObject({ from: FROM, fromUserId: 'BR.8812', profileName: 'Ana' });
    expect(p.contacts.get(FROM)).toEqual({ name: 'Ana', userId: 'BR.8812', username: null });
  });

  it('reads a status sent to a BSUID', () => {
    const p = example('bsuid-status-delivered');
    expect(p.statuses).toEqual([expect.objectContaining({ status: 'delivered', recipientId: 'US.13491208655302741918', recipientUserId: 'US.13491208655302741918' })]);
  });

  it('reports a message with neither from nor from_user_id', () => {
    const p = parseEvent({ object: 'whatsapp_business_account', entry: [{ id: '1', changes: [{ field: 'messages', value: { metadata: { phone_number_id: '1' }, messages: [{ id: 'wamid.nobody', timestamp: '1', type: 'text', text: { body: '?' } }] } }] }] });
    expect(p.invalid).toEqual([{ path: 'entry[0].changes[0].value.messages[0]', reason: 'message lacks from (or from_user_id)' }]);
  });
});

describe('checkEnvelope', () => {
  it.each([[null], [[]], [{ object: 'page', entry: [] }], [{ object: 'whatsapp_business_account' }], [{ object: 'whatsapp_business_account', entry: {} }]])('rejects %j', (body) => {
    expect(() => checkEnvelope(body)).toThrow(EnvelopeError);
  });
});
