// New code never starts on an older schema: `migrate check` (the init container of every web and
// worker pod) waits until the database holds every migration of this code, then exits 0.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadMigrations, migrate, pendingMigrations, waitForSchema } from '../../src/store/migrate.js';
import { createTestDb, testEnv, type TestDb } from '../helpers/context.js';
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
