// parseBody: strings Postgres cannot hold made storable, everything else left as JSON.parse gave it.
import { expect, it } from 'vitest';
import { parseBody } from '../../src/whatsapp/parse.js';

it('strips NUL and replaces lone surrogates, in values and keys, keeping valid pairs', () => {
  const text = '{"a":"x\\u0000y","b":["\\ud800","\\udc00z","\\ud83d\\ude00"],"k\\u0000ey":{"n":1,"t":true,"z":null}}';
  const { body, repaired } = parseBody(text);
  expect(body).toEqual({ a: 'xy', b: ['\ufffd', '\ufffdz', '\ud83d\ude00'], key: { n: 1, t: true, z: null } });
  expect(repaired).toBe(4);
});

it('returns the parsed body untouched when nothing needs repair', () => {
  const text = '{"a":"caf\\u00e9 \\ud83d\\ude00","b":[1,2]}';
  expect(parseBody(text)).toEqual({ body: JSON.parse(text), repaired: 0 });
});

it('keeps a "__proto__" key as data', () => {
  const { body } = parseBody('{"__proto__":{"polluted":"\\u0000yes"}}');
  expect(Object.getPrototypeOf(body)).toBe(Object.prototype);
  expect((body as Record<string, unknown>)['__proto__']).toEqual({ polluted: 'yes' });
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
});
