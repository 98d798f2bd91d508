import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, maskPhone } from '../../src/log.js';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { lines, log: createLogger('info', {}, stream) };
}

describe('logs', () => {
  it('mask phone numbers', () => {
    expect(maskPhone('5511987654321')).toBe('*********4321');
    const { lines, log } = capture();
    log.info({ waId: '5511987654321', from: '16505551234' }, 'inbound');
    expect(lines.join('')).not.toContain('5511987654321');
    expect(lines.join('')).toContain('*********4321');
  });

  it('never carry tokens or secrets', () => {
    const { lines, log } = capture();
    log.info({ accessToken: 'EAAG-secret-token', req: { headers: { authorization: 'Bearer abc123' } }, password: 'p4ss' }, 'x');
    const out = lines.join('');
    for (const secret of ['EAAG-secret-token', 'abc123', 'p4ss']) expect(out).not.toContain(secret);
  });
});
