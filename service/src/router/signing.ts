// Standard Webhooks signatures (https://www.standardwebhooks.com): secrets are `whsec_` + base64
// of random bytes; a signature is HMAC-SHA256 over "{id}.{timestamp}.{body}" keyed with the
// decoded bytes, sent as `v1,<base64>`, several separated by spaces during a rotation.
import { createHmac, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';

const PREFIX = 'whsec_';

/** 24 random bytes, as Svix generates them. */
export function newSecret(): string {
  return PREFIX + randomBytes(24).toString('base64');
}

// Every delivery signs with the same few secrets: each is decoded once, not once per event.
const keys = new Map<string, KeyObject>();

function secretKey(secret: string): KeyObject {
  let key = keys.get(secret);
  if (!key) {
    // Rotated-out secrets stop being used; a bound keeps the cache from holding them forever.
    if (keys.size >= 1_000) keys.clear();
    key = createSecretKey(Buffer.from(secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret, 'base64'));
    keys.set(secret, key);
  }
  return key;
}

export function sign(secret: string, id: string, timestamp: number, body: string): string {
  // Fed in parts: the body (the largest part) is hashed where it is, not copied into a new string first.
  return 'v1,' + createHmac('sha256', secretKey(secret)).update(`${id}.${timestamp}.`).update(body).digest('base64');
}

/** The `webhook-signature` header value for every live secret. */
export function signatureHeader(secrets: readonly string[], id: string, timestamp: number, body: string): string {
  return secrets.map((s) => sign(s, id, timestamp, body)).join(' ');
}
