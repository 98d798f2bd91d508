import { describe, expect, it } from 'vitest';
import { sign, verifySignature } from '../../src/whatsapp/signature.js';

const secret = 'app-secret';

describe('verifySignature', () => {
  it('accepts the HMAC of the exact bytes', () => {
    const raw = Buffer.from('{"a":"caf\\u00e9"}');
    expect(verifySignature(raw, sign(raw, secret), secret)).toBe(true);
  });

  it('rejects the same JSON re-serialized (Meta signs escaped unicode)', () => {
    const sent = Buffer.from('{"a":"caf\\u00e9"}');
    const reserialized = Buffer.from(JSON.stringify(JSON.parse(sent.toString())));
    expect(reserialized.equals(sent)).toBe(false);
    expect(verifySignature(reserialized, sign(sent, secret), secret)).toBe(false);
  });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['no prefix', 'a'.repeat(64)],
    ['sha1', 'sha1=' + 'a'.repeat(40)],
    ['short', 'sha256=abc'],
    ['not hex', 'sha256=' + 'z'.repeat(64)],
    ['array', ['sha256=' + 'a'.repeat(64)]],
  ])('rejects a %s header', (_name, header) => {
    expect(verifySignature(Buffer.from('{}'), header as string | undefined, secret)).toBe(false);
  });

  it('rejects a signature made with another secret', () => {
    const raw = Buffer.from('{}');
    expect(verifySignature(raw, sign(raw, 'other'), secret)).toBe(false);
  });
});
