import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/env.js';

const valid = {
  DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/db',
  REDIS_URL: 'redis://:pw@127.0.0.1:6379',
  WHATSAPP_APP_SECRET: 'app-secret-123',
  WHATSAPP_VERIFY_TOKEN: 'verify',
  API_TOKEN: '0123456789abcdef0123',
};

/** The error fn throws; a call that does not throw fails the test (an assertion inside `catch` alone would pass). */
function captureError(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error, none was thrown');
}

describe('loadConfig', () => {
  it('applies defaults and freezes the result', () => {
    const c = loadConfig(valid);
    expect(c.PORT).toBe(3000);
    expect(c.ACK_DURABILITY).toBe('local');
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('DATABASE_PREPARED_STATEMENTS is off unless set to true, and anything else than true/false is refused by name', () => {
    expect(loadConfig(valid).DATABASE_PREPARED_STATEMENTS).toBe(false);
    expect(loadConfig({ ...valid, DATABASE_PREPARED_STATEMENTS: 'true' }).DATABASE_PREPARED_STATEMENTS).toBe(true);
    const err = captureError(() => loadConfig({ ...valid, DATABASE_PREPARED_STATEMENTS: 'yes' }));
    expect((err as ConfigError).problems.map((p) => p.variable)).toEqual(['DATABASE_PREPARED_STATEMENTS']);
  });

  it('names every wrong variable in one error', () => {
    const err = captureError(() => loadConfig({ ...valid, PORT: 'abc', DATABASE_URL: 'mysql://x', API_TOKEN: 'short', ACK_DURABILITY: 'sometimes' }));
    expect(err).toBeInstanceOf(ConfigError);
    const vars = (err as ConfigError).problems.map((p) => p.variable).sort();
    expect(vars).toEqual(['ACK_DURABILITY', 'API_TOKEN', 'DATABASE_URL', 'PORT']);
    expect(err.message).toContain('PORT');
  });

  it('requires a bucket with MEDIA_STORE=s3, and both S3 keys or neither', () => {
    const err = captureError(() => loadConfig({ ...valid, MEDIA_STORE: 's3', S3_ACCESS_KEY_ID: 'key' }));
    expect((err as ConfigError).problems.map((p) => p.variable).sort()).toEqual(['S3_BUCKET', 'S3_SECRET_ACCESS_KEY']);
    expect(loadConfig({ ...valid, MEDIA_STORE: 's3', S3_BUCKET: 'media' }).MEDIA_STORE).toBe('s3');
    expect(loadConfig(valid).MEDIA_STORE).toBe('fs');
  });

  it('requires a Redis URL or Sentinels, not both', () => {
    const { REDIS_URL: _, ...noRedis } = valid;
    expect(() => loadConfig(noRedis)).toThrow(/REDIS_URL/);
    expect(() => loadConfig({ ...valid, REDIS_SENTINELS: 'a:26379' })).toThrow(/REDIS_SENTINELS/);
    const s = loadConfig({ ...noRedis, REDIS_SENTINELS: 'a:26379, b:26380', REDIS_MASTER_NAME: 'm' });
    expect(s.REDIS_SENTINELS).toEqual(['a:26379', 'b:26380']);
  });

  it('rejects a malformed sentinel list', () => {
    const { REDIS_URL: _, ...noRedis } = valid;
    expect(() => loadConfig({ ...noRedis, REDIS_SENTINELS: 'nohostport' })).toThrow(/REDIS_SENTINELS/);
  });

  it('needs an access token with the bootstrap phone number id', () => {
    expect(() => loadConfig({ ...valid, WHATSAPP_PHONE_NUMBER_ID: '123' })).toThrow(/WHATSAPP_ACCESS_TOKEN/);
  });

  it('never echoes secret values in its message', () => {
    const err = captureError(() => loadConfig({ ...valid, WHATSAPP_APP_SECRET: 'x', API_TOKEN: 'leaky-but-short' }));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain('API_TOKEN');
    expect(err.message).not.toContain('leaky-but-short');
  });
});
