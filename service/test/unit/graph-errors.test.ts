import { describe, expect, it } from 'vitest';
import { classifyGraphError, errorHint, parseGraphError } from '../../src/whatsapp/errors.js';

describe('classifyGraphError (Meta error codes → action)', () => {
  it.each([
    [130429, 400, 'throttle'],
    [131056, 400, 'throttle'],
    [4, 400, 'throttle'],
    [80007, 400, 'throttle'],
    [131000, 500, 'retry'],
    [131016, 503, 'retry'],
    [133004, 503, 'retry'],
    [1, 500, 'retry'],
    [2, 503, 'retry'],
    [100, 400, 'permanent'],
    [131026, 400, 'permanent'],
    [131047, 400, 'permanent'],
    [131048, 400, 'permanent'],
    [131049, 400, 'permanent'],
    [131050, 400, 'permanent'],
    [131051, 400, 'permanent'],
    [131052, 400, 'permanent'],
    [132000, 400, 'permanent'],
    [132012, 400, 'permanent'],
    [190, 401, 'pause_channel'],
    [368, 400, 'pause_channel'],
    [131031, 400, 'pause_channel'],
  ] as const)('%i (HTTP %i) → %s', (code, httpStatus, action) => {
    expect(classifyGraphError({ code, httpStatus })).toBe(action);
  });

  it('retries 5xx, 429 and timeouts without a code', () => {
    expect(classifyGraphError({ code: null, httpStatus: 502 })).toBe('retry');
    expect(classifyGraphError({ code: null, httpStatus: 429 })).toBe('retry');
    expect(classifyGraphError({ code: null, httpStatus: 0 })).toBe('retry');
    expect(classifyGraphError({ code: null, httpStatus: 400 })).toBe('permanent');
  });

  it('parses Meta error bodies and hints at templates outside the window', () => {
    const e = parseGraphError(400, { error: { message: '(#131047) Re-engagement message', type: 'OAuthException', code: 131047, error_data: { messaging_product: 'whatsapp', details: 'More than 24 hours have passed' }, fbtrace_id: 'Az8or' } });
    expect(e).toEqual({ httpStatus: 400, code: 131047, subcode: null, title: '(#131047) Re-engagement message', details: 'More than 24 hours have passed', fbtraceId: 'Az8or' });
    expect(errorHint(131047)).toMatch(/template/);
    expect(parseGraphError(502, 'not json').code).toBeNull();
  });
});
