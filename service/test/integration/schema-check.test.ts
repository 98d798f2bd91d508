// New code never starts on an older schema: `migrate check` (the init container of every web and
// worker pod) waits until the database holds every migration of this code, then exits 0. A
// database that cannot be asked does not hold the pod: a web pod restarted during a Postgres
// outage must start and ack webhooks.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { createLogger } from '../../src/log.js';
import { loadMigrations, migrate, pendingMigrations, waitForSchema } from '../../src/store/migrate.js';
import { freePort } from '../../../scripts/stack/proc.js';
import { startPostgres } from '../../../scripts/stack/postgres.js';
import { startPgBouncer } from '../../../scripts/stack/pgbouncer.js';
import { createTestDb, testConfig, testEnv, type TestDb } from '../helpers/context.js';
import { eventually } from '../helpers/app.js';
import { spawnService } from '../helpers/process.js';

const all = loadMigrations();
let db: TestDb;
beforeAll(async () => {
  db = await createTestDb({ empty: true });
});
afterAll(async () => {
  await db?.drop();
});

it('a schema one migration behind the code is not current; the check waits, then passes once the Job has run', async () => {
  expect(await pendingMigrations(db.pool)).toEqual(all.map((m) => m.name));
  await migrate(db.pool, all.slice(0, -1));
  expect(await pendingMigrations(db.pool)).toEqual([all.at(-1)!.name]);
  await expect(waitForSchema(db.pool, { timeoutMs: 300, intervalMs: 50 })).rejects.toThrow(`${all.at(-1)!.name} not applied`);

  const proc = spawnService('migrate', testEnv(db, { LOG_LEVEL: 'info' }), ['check']);
  try {
    await eventually(async () => /waiting for the schema/.test(proc.output()), { timeoutMs: 30_000, what: 'the check to report the missing migration' });
    expect(proc.output()).toContain(all.at(-1)!.name);
    expect(proc.child.exitCode).toBeNull();
    await migrate(db.pool);
    const code = await Promise.race([proc.exited, new Promise<'stuck'>((r) => setTimeout(() => r('stuck'), 20_000))]);
    expect(code, proc.output()).toBe(0);
  } finally {
    await proc.kill();
  }
}, 60_000);

it('a schema ahead of the code (a rollback) counts as current; an edited migration does not', async () => {
  await migrate(db.pool);
  await db.pool.query("INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, '9999_future', 'x') ON CONFLICT DO NOTHING");
  await expect(waitForSchema(db.pool, { timeoutMs: 100 })).resolves.toBeUndefined();
  const edited = all.map((m, i) => (i === 0 ? { ...m, checksum: 'edited' } : m));
  expect(await pendingMigrations(db.pool, edited)).toEqual([all[0]!.name]);
});

it('passes while Postgres is down behind a running PgBouncer (a pod restarted during an outage starts at once)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-schema-check-'));
  // Postgres and PgBouncer run as the postgres user when we are root: it must reach its folders.
  fs.chmodSync(dir, 0o755);
  const pg = await startPostgres({ dir: path.join(dir, 'pg'), port: await freePort(), password: 'schema-check', ephemeral: true });
  const bouncer = await startPgBouncer({ dir: path.join(dir, 'bouncer'), port: await freePort(), dbPort: pg.port, password: 'schema-check' });
  const migrated = await buildApp(testConfig({ url: bouncer.url } as TestDb), 'migrate', { log: createLogger('silent') });
  await migrated.start();
  await migrated.stop();
  await pg.stop();
  const check = await buildApp(testConfig({ url: bouncer.url } as TestDb, { DB_QUERY_TIMEOUT_MS: '5000' }), 'migrate', { log: createLogger('silent'), migrateCheck: true });
  try {
    const outcome = await Promise.race([
      check.start().then(() => 'finished', (err: Error) => `failed: ${err.message}`),
      new Promise((r) => setTimeout(() => r('still waiting after 30 s'), 30_000)),
    ]);
    expect(outcome).toBe('finished');
  } finally {
    await check.stop();
    await bouncer.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);
