// The `types=` filter of /v1/events: clients asking the same types share one filter (and so one
// pick of each batch), and names that are no event type cannot grow what the process keeps.
import { describe, expect, it } from 'vitest';
import { typeFilter } from '../../src/events/hub.js';

describe('typeFilter', () => {
  it('keeps the asked event types, every type when none is asked, nothing for names that are no event type', () => {
    const f = typeFilter(' message.status , message.created,');
    expect(['message.created', 'message.status', 'conversation.updated', 'history.chunk'].map(f)).toEqual([true, true, false, false]);
    expect(typeFilter('')('history.chunk')).toBe(true);
    expect(typeFilter(undefined)('message.created')).toBe(true);
    const junk = typeFilter('nope,token.revoked');
    expect(['message.created', 'token.revoked', 'nope'].map(junk)).toEqual([false, false, false]);
  });

  it('shares one filter per set of known types, however many distinct unknown names clients send', () => {
    for (let i = 0; i < 1000; i++) typeFilter(`message.created,junk-${i}`);
    for (let i = 0; i < 1000; i++) typeFilter(`junk-${i},other-${i}`);
    expect(typeFilter('junk-x,message.status')).toBe(typeFilter('message.status'));
    expect(typeFilter('conversation.updated,history.chunk,zzz')).toBe(typeFilter('history.chunk,conversation.updated'));
    expect(typeFilter('message.created,junk-5')).toBe(typeFilter('message.created'));
  });
});
