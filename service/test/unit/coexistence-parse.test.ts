// Coexistence webhooks (history, smb_message_echoes, smb_app_state_sync) → rows, from Meta's
// documented examples and the shapes partners have captured.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseEchoes, parseHistory, parseStateSync } from '../../src/sync/coexistence.js';
import { parseEvent, type OtherChange } from '../../src/whatsapp/parse.js';
import { echoEdit, echoRevoke, historyChange, imageMessage, textMessage } from '../fixtures/payloads.js';

const example = (name: string): OtherChange => parseEvent(JSON.parse(fs.readFileSync(new URL(`../fixtures/docs-examples/${name}.json`, import.meta.url), 'utf8'))).other[0]!;
const asChange = (c: ReturnType<typeof historyChange>): OtherChange => ({ field: c.field, wabaId: null, value: c.value as Record<string, unknown> });

describe('parseHistory', () => {
  it('reads Meta\'s example: chunk metadata, the customer from the thread, who sent what', () => {
    const [chunk] = parseHistory(example('history'));
    expect(chunk).toMatchObject({ phoneNumberId: '106540352242922', phase: 0, chunkOrder: 1, progress: 55, errors: [], invalid: [] });
    expect(chunk!.rows.map((r) => [r.waId, r.direction, r.status, r.message.body])).toEqual([
      ['16505551234', 'inbound', 'read', 'Hi, are you open on Sunday?'],
      ['16505551234', 'outbound', 'delivered', 'Yes, 10am to 4pm.'],
    ]);
  });

  it('takes history_context.from_me as the business\'s own message, without `to`', () => {
    const m = { ...textMessage({ from: '918588096070', body: 'Hi man' }), history_context: { from_me: true, status: 'read' } };
    const [chunk] = parseHistory(asChange(historyChange({ displayPhoneNumber: '+1 555-078-3881', threads: [{ id: '917506080480', messages: [m] }] })));
    expect(chunk!.rows[0]).toMatchObject({ waId: '917506080480', direction: 'outbound', status: 'read' });
  });

  it('keeps a media placeholder (no id yet), reports a message with an impossible timestamp, and keeps the rest', () => {
    const img = imageMessage({ from: '16505551234' });
    const placeholder = { ...img, image: { mime_type: 'image/jpeg' }, history_context: { status: 'READ' } };
    const broken = { ...textMessage({ from: '16505551234' }), timestamp: '99999999999999999', history_context: { status: 'READ' } };
    const [chunk] = parseHistory(asChange(historyChange({ threads: [{ id: '16505551234', messages: [placeholder, broken] }] })));
    expect(chunk!.rows).toHaveLength(1);
    expect(chunk!.rows[0]!.message).toMatchObject({ type: 'image', mediaId: null, mediaMimeType: 'image/jpeg' });
    expect(chunk!.invalid).toEqual([{ path: 'history[0].threads[0].messages[1]', reason: 'message lacks timestamp' }]);
  });

  it('records the declined history error (2593109) with no rows', () => {
    const [chunk] = parseHistory(example('history-declined'));
    expect(chunk!.rows).toEqual([]);
    expect(chunk!.errors).toEqual([{ code: 2593109, message: 'History sync is turned off by the business' }]);
  });
});

describe('parseEchoes', () => {
  it('reads Meta\'s example as a message to the customer in `to`', () => {
    const { rows } = parseEchoes(example('smb-message-echoes'));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ waId: '16505551234', change: null });
    expect(rows[0]!.message.body).toContain("Here's the info you requested!");
  });

  it('turns edits and revokes into changes of the message they name', () => {
    const value = { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550783881', phone_number_id: '106540352242922' }, message_echoes: [echoEdit('wamid.ORIG', 'Price is 12', { to: '16505551234' }), echoRevoke('wamid.ORIG', { to: '16505551234' })] };
    const { rows } = parseEchoes({ field: 'smb_message_echoes', wabaId: null, value });
    expect(rows.map((r) => r.change)).toEqual([
      { kind: 'edit', targetWamid: 'wamid.ORIG', body: 'Price is 12' },
      { kind: 'revoke', targetWamid: 'wamid.ORIG', body: null },
    ]);
  });

  it('takes the BSUID in `to_user_id` as the customer when Meta withholds their number', () => {
    const echo = { from: '15550783881', to_user_id: 'US.13491208655302741918', id: 'wamid.ECHO_BSUID', timestamp: '1749416383', type: 'text', text: { body: 'Hello @sheena' } };
    const value = { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550783881', phone_number_id: '106540352242922' }, message_echoes: [echo, { ...echo, id: 'wamid.NOBODY', to_user_id: undefined }] };
    const { rows, invalid } = parseEchoes({ field: 'smb_message_echoes', wabaId: null, value });
    expect(rows.map((r) => r.waId)).toEqual(['US.13491208655302741918']);
    expect(invalid).toEqual([{ path: 'message_echoes[1]', reason: 'echo lacks to (or to_user_id)' }]);
  });
});

describe('parseStateSync', () => {
  it('reads Meta\'s example: an add with names, a remove without', () => {
    const { rows } = parseStateSync(example('smb-app-state-sync'));
    expect(rows).toEqual([
      { waId: '16505551234', action: 'add', fullName: 'Pablo Morales', firstName: 'Pablo', at: new Date(1739321024 * 1000) },
      { waId: '16505559999', action: 'remove', fullName: null, firstName: null, at: new Date(1739321090 * 1000) },
    ]);
  });
});
