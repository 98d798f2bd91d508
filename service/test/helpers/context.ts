// Per-file test context: a fresh database cloned from the migrated template, a unique
// queue prefix on the shared Redis, and a Config pointing at both.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { inject } from 'vitest';
import { loadConfig, type Config } from '../../src/config/env.js';

export const APP_SECRET = 'test-app-secret-0123456789';
export const VERIFY_TOKEN = 'test-verify-token';
export const API_TOKEN = 'test-api-token-0123456789abcdef';
export const PHONE_NUMBER_ID = '106540352242922';

export interface TestDb {
  readonly url: string;
  readonly pool: pg.Pool;
  drop(): Promise<void>;
}

/** A database of its own, migrated (a clone of the template), or `empty` (what a first deploy meets). */
export async function createTestDb(opts: { empty?: boolean } = {}): Promise<TestDb> {
  const adminUrl = inject('pgAdminUrl');
  const name = `t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name} TEMPLATE ${opts.empty ? 'template0' : inject('pgTemplate')}`);
  await admin.end();
  const url = adminUrl.replace(/\/[^/]+$/, `/${name}`);
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  return {
    url,
    pool,
    async drop() {
      await pool.end();
      const a = new pg.Client({ connectionString: adminUrl });
      await a.connect();
      // A pool's end() resolves before its clients' connections have closed: give them up to 2 s
      // to go on their own, since a connection FORCE terminates mid-close reports an error
      // (57P01) in the test process after every test passed.
      for (let i = 0; i < 40; i++) {
        const { rows } = await a.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [name]);
        if (rows[0]!.n === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

export function uniquePrefix(): string {
  return `t${randomBytes(5).toString('hex')}`;
}

/** The environment a test process runs with (also handed to child processes). */
export function testEnv(db: TestDb, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: db.url,
    REDIS_URL: inject('redisUrl'),
    QUEUE_PREFIX: uniquePrefix(),
    WHATSAPP_APP_SECRET: APP_SECRET,
    WHATSAPP_VERIFY_TOKEN: VERIFY_TOKEN,
    WHATSAPP_PHONE_NUMBER_ID: PHONE_NUMBER_ID,
    WHATSAPP_ACCESS_TOKEN: 'test-access-token',
    API_TOKEN,
    // Nothing leaves the machine: a test that needs the Graph API points this at the simulator.
    GRAPH_API_BASE_URL: 'http://127.0.0.1:9',
    MEDIA_FS_DIR: path.join(inject('stackDir'), 'media', randomBytes(5).toString('hex')),
    WORKER_CONCURRENCY: '8',
    // The limit has its own test; elsewhere tests send faster than people do.
    RATE_LIMIT_PER_MINUTE: '0',
    ...overrides,
  };
}

export function testConfig(db: TestDb, overrides: Record<string, string> = {}): Config {
  return loadConfig(testEnv(db, overrides));
}
