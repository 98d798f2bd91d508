// Postgres (behind PgBouncer) going away while a connection is checked out must fail that
// transaction, not the process. Regression: pg-pool drops its 'error' listener from clients it
// hands out, so a cut connection was an unhandled 'error' event that killed the worker.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Config } from '../../src/config/env.js';
import { createPool, withTransaction, type Pool } from '../../src/store/pool.js';
import { freePort } from '../../../scripts/stack/proc.js';
import { startPostgres, type PostgresHandle } from '../../../scripts/stack/postgres.js';
import { startPgBouncer, type PgBouncerHandle } from '../../../scripts/stack/pgbouncer.js';

let dir: string;
let pg: PostgresHandle;
let bouncer: PgBouncerHandle;
let pool: Pool;
const uncaught: unknown[] = [];
const onUncaught = (err: unknown) => uncaught.push(err);

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-pg-outage-'));
  fs.chmodSync(dir, 0o755);
  pg = await startPostgres({ dir: path.join(dir, 'pg'), port: await freePort(), password: 'outage-test', ephemeral: true });
  bouncer = await startPgBouncer({ dir: path.join(dir, 'bouncer'), port: await freePort(), dbPort: pg.port, password: 'outage-test' });
  pool = createPool({ DATABASE_URL: bouncer.url, DB_POOL_MAX: 4 } as Config, 'outage-test', () => undefined);
  process.on('uncaughtException', onUncaught);
}, 60_000);

afterAll(async () => {
  process.off('uncaughtException', onUncaught);
  await pool?.end().catch(() => undefined);
  await bouncer?.stop();
  await pg?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

it('a connection cut while checked out fails its transaction, not the process, and the pool recovers', async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const tx = withTransaction(pool, async (client) => {
    await client.query('SELECT 1');
    await held; // the client is checked out and idle when the connection is cut
    await client.query('SELECT 2');
  });
  const outcome = tx.then(() => 'committed', (err: Error) => err.message);
  await new Promise((r) => setTimeout(r, 200));
  await bouncer.kill();
  await new Promise((r) => setTimeout(r, 300));
  release();
  expect(await outcome).not.toBe('committed');
  expect(uncaught).toEqual([]);

  bouncer = await bouncer.restart();
  const n = await withTransaction(pool, async (client) => (await client.query<{ n: number }>('SELECT 42 AS n')).rows[0]!.n);
  expect(n).toBe(42);
}, 60_000);
