// Standard Webhooks signatures (https://www.standardwebhooks.com): secrets are `whsec_` + base64
// of random bytes; a signature is HMAC-SHA256 over "{id}.{timestamp}.{body}" keyed with the
// decoded bytes, sent as `v1,<base64>`, several separated by spaces during a rotation.
import { createHmac, randomBytes } from 'node:crypto';

const PREFIX = 'whsec_';

/** 24 random bytes, as Svix generates them. */
export function newSecret(): string {
  return PREFIX + randomBytes(24).toString('base64');
}

export function secretKey(secret: string): Buffer {
  return Buffer.from(secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret, 'base64');
}

export function sign(secret: string, id: string, timestamp: number, body: string): string {
  return 'v1,' + createHmac('sha256', secretKey(secret)).update(`${id}.${timestamp}.${body}`).digest('base64');
}

/** The `webhook-signature` header value for every live secret. */
export function signatureHeader(secrets: readonly string[], id: string, timestamp: number, body: string): string {
  return secrets.map((s) => sign(s, id, timestamp, body)).join(' ');
}
