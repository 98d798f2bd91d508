// Structured JSON logs. Tokens and secrets never reach them; phone numbers are masked.
import { pino, type Logger } from 'pino';

export type { Logger };

const REDACT = [
  'password',
  '*.password',
  'token',
  '*.token',
  'accessToken',
  '*.accessToken',
  'access_token',
  '*.access_token',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'req.headers["x-hub-signature-256"]',
  'secret',
  '*.secret',
];

/** Log fields that hold a customer's phone number; logged masked, whatever the caller passes. */
const PHONE_FIELDS = ['waId', 'wa_id', 'from', 'to', 'phone', 'recipientId', 'recipient_id'] as const;

export function createLogger(level: string, base: Record<string, unknown> = {}, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    serializers: Object.fromEntries(PHONE_FIELDS.map((f) => [f, (v: unknown) => (typeof v === 'string' ? maskPhone(v) : v)])),
    base: { service: 'wa-router', ...base },
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return destination ? pino(options, destination) : pino(options);
}

/** `5511987654321` → `*********4321`: enough to tell contacts apart in a log, not to dial them. */
export function maskPhone(phone: string | undefined | null): string | undefined {
  if (!phone) return undefined;
  return phone.length <= 4 ? '****' : '*'.repeat(phone.length - 4) + phone.slice(-4);
}
