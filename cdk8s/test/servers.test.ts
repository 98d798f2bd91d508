// The rendered files are accepted by the real servers (Debian's Postgres, PgBouncer, Redis and
// Sentinel) and mean what the preset says, read back from the running processes.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { presets, renderPostgresConf, renderRedisConf } from '../src/index.js';
import { freePort, LOOPBACK } from '../../scripts/stack/proc.js';
import { postgresBinDir, startPostgres, type PostgresHandle } from '../../scripts/stack/postgres.js';
import { startPgBouncer } from '../../scripts/stack/pgbouncer.js';
import { startRedis } from '../../scripts/stack/redis.js';
import { startSentinel } from '../../scripts/stack/sentinel.js';

const PASSWORD = 'tuning-test-password';
let dir: string;

const psql = (url: string, sql: string) => execFileSync(path.join(postgresBinDir(), 'psql'), [url, '-Atqc', sql], { encoding: 'utf8', timeout: 20_000 }).trim();
const redisCli = (port: number, ...args: string[]) => execFileSync('redis-cli', ['-h', LOOPBACK, '-p', String(port), '--no-auth-warning', ...args], { encoding: 'utf8', timeout: 10_000 }).trim();

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-tuning-'));
  // Postgres and PgBouncer run as the postgres user when we are root: it must reach its folders.
  fs.chmodSync(dir, 0o755);
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('Postgres and PgBouncer', () => {
  let pg: PostgresHandle | undefined;
  afterAll(async () => pg?.stop());

  it.each(['minimal', 'standard', 'premium'] as const)('Postgres starts with %s\'s postgresql.conf and reports its values', async (name) => {
    await pg?.stop();
    pg = await startPostgres({ dir: path.join(dir, 'pg'), port: await freePort(), password: PASSWORD, conf: renderPostgresConf(presets[name]) });
    const show = (k: string) => psql(pg!.url, `SHOW ${k}`);
    const p = presets[name];
    expect(show('max_connections')).toBe(String(p.postgres.maxConnections));
    // Postgres 15+ reports wal_compression = on as the method it picked.
    const shown: Record<string, string> = { on: 'pglz' };
    for (const [key, value] of Object.entries(p.postgres.settings)) {
      expect(show(key), key).toBe(key === 'wal_compression' ? (shown[String(value)] ?? String(value)) : String(value));
    }
    expect(show('password_encryption')).toBe('scram-sha-256');
  }, 120_000);

  it('PgBouncer runs the rendered pgbouncer.ini in transaction mode and passes queries through', async () => {
    const bouncer = await startPgBouncer({ dir: path.join(dir, 'pgbouncer'), port: await freePort(), dbPort: pg!.port, password: PASSWORD, preset: 'premium' });
    try {
      expect(psql(bouncer.url, 'SELECT 40 + 2')).toBe('42');
      // The service's statement_timeout reaches the server connections even though PgBouncer
      // drops it as a startup parameter (regression: PgBouncer refused every service connection).
      expect(execFileSync(path.join(postgresBinDir(), 'psql'), [bouncer.url, '-Atqc', 'SHOW statement_timeout'], { encoding: 'utf8', env: { ...process.env, PGOPTIONS: '-c statement_timeout=5000' } }).trim()).toBe('1min');
      const admin = bouncer.url.replace(/\/wa_router$/, '/pgbouncer');
      const config = execFileSync(path.join(postgresBinDir(), 'psql'), [admin, '-Atqc', 'SHOW CONFIG'], { encoding: 'utf8', timeout: 20_000 });
      const setting = (k: string) => config.split('\n').find((l) => l.startsWith(`${k}|`))?.split('|')[1];
      expect(setting('pool_mode')).toBe('transaction');
      expect(setting('max_client_conn')).toBe('500');
      expect(setting('default_pool_size')).toBe('50');
      expect(setting('reserve_pool_size')).toBe('25');
      expect(setting('max_db_connections')).toBe('100');
    } finally {
      await bouncer.stop();
    }
  }, 60_000);
});

describe('Redis and Sentinel', () => {
  it('Redis runs the rendered redis.conf: noeviction, AOF everysec, the preset\'s maxmemory', async () => {
    const port = await freePort();
    const conf = renderRedisConf(presets.premium, { scaleTo: { cpuCores: 2, memoryGiB: 5 } });
    const redis = await startRedis({ dir: path.join(dir, 'redis'), port, password: PASSWORD, conf, maxmemory: presets.premium.redis.maxmemory });
    try {
      const get = (k: string) => redisCli(port, '-a', PASSWORD, 'CONFIG', 'GET', k).split('\n')[1];
      expect(get('maxmemory-policy')).toBe('noeviction');
      expect(get('appendonly')).toBe('yes');
      expect(get('appendfsync')).toBe('everysec');
      expect(get('maxmemory')).toBe(String(4 * 2 ** 30));
      expect(get('client-output-buffer-limit')).toContain('slave 1073741824 268435456 60');
      expect(get('slowlog-log-slower-than')).toBe('10000');
    } finally {
      await redis.stop();
    }
  }, 60_000);

  it('a Sentinel with the rendered sentinel.conf monitors the master with quorum 2', async () => {
    const port = await freePort();
    const redis = await startRedis({ dir: path.join(dir, 'redis-m'), port, password: PASSWORD, conf: renderRedisConf(presets.standard, { scaleTo: { cpuCores: 2, memoryGiB: 1 } }) });
    const sentinel = await startSentinel({ dir: path.join(dir, 'sentinel'), port: await freePort(), masterPort: port, password: PASSWORD, downAfterMs: 1000, failoverTimeoutMs: 5000 });
    try {
      expect(redisCli(sentinel.port, 'SENTINEL', 'get-master-addr-by-name', 'wa-router').split('\n')).toEqual([LOOPBACK, String(port)]);
      const master = redisCli(sentinel.port, 'SENTINEL', 'master', 'wa-router').split('\n');
      const field = (k: string) => master[master.indexOf(k) + 1];
      expect(field('quorum')).toBe('2');
      expect(field('down-after-milliseconds')).toBe('1000');
      expect(field('flags')).toBe('master');
    } finally {
      await sentinel.stop();
      await redis.stop();
    }
  }, 60_000);
});
