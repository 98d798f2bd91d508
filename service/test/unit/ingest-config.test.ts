// ENQUEUE_TIMEOUT_MS and INGEST_MAX_PENDING_BYTES: defaults, and mistakes named at boot.
import { expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/env.js';

const valid = {
  DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/db',
  REDIS_URL: 'redis://:pw@127.0.0.1:6379',
  WHATSAPP_APP_SECRET: 'app-secret-123',
  WHATSAPP_VERIFY_TOKEN: 'verify',
  API_TOKEN: '0123456789abcdef0123',
};

const problems = (env: Record<string, string>): string[] => {
  const err = (() => {
    try {
      loadConfig({ ...valid, ...env });
      return null;
    } catch (e) {
      return e;
    }
  })();
  expect(err).toBeInstanceOf(ConfigError);
  return (err as ConfigError).problems.map((p) => p.variable);
};

it('defaults to a 2 s enqueue deadline and a 32 MiB cap', () => {
  const c = loadConfig(valid);
  expect(c.ENQUEUE_TIMEOUT_MS).toBe(2_000);
  expect(c.INGEST_MAX_PENDING_BYTES).toBe(32 * 1024 * 1024);
});

it.each([
  [{ ENQUEUE_TIMEOUT_MS: 'soon' }, 'ENQUEUE_TIMEOUT_MS'],
  [{ ENQUEUE_TIMEOUT_MS: '10' }, 'ENQUEUE_TIMEOUT_MS'],
  [{ ACK_DURABILITY: 'replicated', ACK_WAIT_TIMEOUT_MS: '2000', ENQUEUE_TIMEOUT_MS: '1500' }, 'ENQUEUE_TIMEOUT_MS'],
  [{ INGEST_MAX_PENDING_BYTES: '-1' }, 'INGEST_MAX_PENDING_BYTES'],
  [{ INGEST_MAX_PENDING_BYTES: '1048576' }, 'INGEST_MAX_PENDING_BYTES'],
])('refuses %o naming %s', (env, variable) => {
  expect([...new Set(problems(env))]).toEqual([variable]);
});
