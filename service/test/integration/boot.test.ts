// What an operator sees at boot, as real OS processes: a config mistake exits with code 2 naming
// the variable, and two `migrate` processes started at once (two pods of the migration Job, or a
// Job and an `all` process) apply each file exactly once, one after the other.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadMigrations } from '../../src/store/migrate.js';
import { createTestDb, testEnv, type TestDb } from '../helpers/context.js';
import { eventually } from '../helpers/app.js';
import { spawnService, type ServiceProcess } from '../helpers/process.js';

let db: TestDb;
beforeAll(async () => {
  db = await createTestDb({ empty: true });
});
afterAll(async () => {
  await db?.drop();
});

it('exits with code 2 and names every wrong variable when the configuration is wrong', async () => {
  const proc = spawnService('web', testEnv(db, { PORT: 'not-a-port', ACK_DURABILITY: 'sometimes', LOG_LEVEL: 'info' }));
  const code = await Promise.race([proc.exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 30_000))]);
  if (code === 'running') await proc.kill();
  expect(code).toBe(2);
  expect(proc.output()).toMatch(/PORT/);
  expect(proc.output()).toMatch(/ACK_DURABILITY/);
}, 60_000);

it('two migrate processes at once apply each migration file exactly once', async () => {
  const env = testEnv(db, { LOG_LEVEL: 'info' });
  // Both must really overlap, whatever their start-up times: the ledger exists (as after a first
  // run) and is held locked until both processes are waiting in Postgres; then both go at once.
  await db.pool.query(`CREATE TABLE schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
  const gate = await db.pool.connect();
  const procs: ServiceProcess[] = [];
  try {
    await gate.query('BEGIN');
    await gate.query('LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE');
    procs.push(spawnService('migrate', env), spawnService('migrate', env));
    await eventually(async () => Number((await db.pool.query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")).rows[0].n) === 2, { timeoutMs: 30_000, what: 'both migrate processes waiting' });
  } finally {
    await gate.query('COMMIT');
    gate.release();
  }
  const codes = await Promise.all(procs.map((p) => p.exited));
  expect(codes, procs.map((p) => p.output()).join('\n----\n')).toEqual([0, 0]);
  // Each process logs what it applied: together exactly every file, no file by both.
  const applied = procs.map((p) => p.output().split('\n').filter((l) => l.includes('"applied"')).flatMap((l) => (JSON.parse(l) as { applied: string[] }).applied));
  const all = loadMigrations().map((m) => m.name);
  expect([...applied[0]!, ...applied[1]!].sort()).toEqual([...all].sort());
  expect(applied.filter((a) => a.length > 0)).toHaveLength(1);
  const rows = (await db.pool.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY version')).rows.map((r) => r.name);
  expect(rows).toEqual(all);
  // The schema works: the template-migrated tables exist in this one too.
  expect((await db.pool.query("SELECT to_regclass('messages') IS NOT NULL AS ok")).rows[0]).toEqual({ ok: true });
}, 120_000);
