// X-Hub-Signature-256: HMAC-SHA256 of the exact bytes Meta sent, keyed with the app secret.
import { createHmac, timingSafeEqual } from 'node:crypto';

const PREFIX = 'sha256=';
const HEX_LEN = 64;

/** Constant-time check of a `sha256=<hex>` header against the raw body. */
export function verifySignature(raw: Buffer, header: string | string[] | undefined, appSecret: string): boolean {
  if (typeof header !== 'string' || header.length !== PREFIX.length + HEX_LEN || !header.startsWith(PREFIX)) return false;
  const given = Buffer.from(header.slice(PREFIX.length), 'hex');
  // Buffer.from('zz', 'hex') silently stops at the first bad pair: length catches it.
  if (given.length !== HEX_LEN / 2) return false;
  const expected = createHmac('sha256', appSecret).update(raw).digest();
  return timingSafeEqual(given, expected);
}

export function sign(raw: Buffer | string, appSecret: string): string {
  return PREFIX + createHmac('sha256', appSecret).update(raw).digest('hex');
}
