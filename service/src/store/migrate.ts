// Numbered .sql files, applied in order, once, in one transaction under an advisory lock.
// A transaction-scoped lock (not a session lock) so it also works through PgBouncer.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Pool } from './pool.js';
import { withTransaction } from './pool.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
// Any constant works; this one spells "wa-router migrate" loosely, to be recognizable in pg_locks.
const LOCK_KEY = 0x7761_726f;

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
}

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d{3,}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((file) => {
      const sql = fs.readFileSync(`${dir}/${file}`, 'utf8');
      return { version: Number(file.split('_')[0]), name: file.replace(/\.sql$/, ''), sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

/** Applies pending migrations; returns the names applied. Refuses edited, already-applied files. */
export async function migrate(pool: Pool, migrations = loadMigrations()): Promise<string[]> {
  return withTransaction(pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: number; name: string; checksum: string }>('SELECT version, name, checksum FROM schema_migrations');
    const applied = new Map(rows.map((r) => [r.version, r]));
    const done: string[] = [];
    for (const m of migrations) {
      const prior = applied.get(m.version);
      if (prior) {
        if (prior.checksum !== m.checksum) throw new Error(`migration ${m.name} was edited after it was applied (checksum differs); add a new migration instead`);
        continue;
      }
      await client.query(m.sql);
      await client.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [m.version, m.name, m.checksum]);
      done.push(m.name);
    }
    return done;
  });
}

/**
 * Migrations of this code the database does not hold (or holds with another checksum): all of
 * them while it has no ledger yet. A schema ahead of the code (a rollback) counts as current.
 */
export async function pendingMigrations(pool: Pool, migrations = loadMigrations()): Promise<string[]> {
  const ledger = await pool.query<{ version: number; checksum: string }>('SELECT version, checksum FROM schema_migrations').catch((err: { code?: string }) => {
    if (err.code === '42P01') return { rows: [] };
    throw err;
  });
  const applied = new Map(ledger.rows.map((r) => [r.version, r.checksum]));
  return migrations.filter((m) => applied.get(m.version) !== m.checksum).map((m) => m.name);
}

export interface SchemaWaitOptions {
  /** @defaultValue 900 000 (the migration Job's own deadline) */
  readonly timeoutMs?: number;
  /** @defaultValue 2 000 */
  readonly intervalMs?: number;
  /** Told what is still missing at every look. */
  readonly onWait?: (missing: string[]) => void;
  /** Told why the database could not be asked, once, before passing. */
  readonly onUnreachable?: (err: Error) => void;
}

/**
 * Resolves once the database holds every migration of this code; rejects naming the missing ones
 * after the timeout. What a web or worker pod's init container runs (`migrate check`), so new code
 * never starts on an older schema, whichever order the migration Job and the rollout go in.
 * A database that cannot be asked passes: a pod restarted during a Postgres outage must start (the
 * web acks webhooks into Redis meanwhile), and such a pod runs the image whose migration Job
 * already ran, since a deploy runs that Job first and stops when it fails.
 */
export async function waitForSchema(pool: Pool, opts: SchemaWaitOptions = {}, migrations = loadMigrations()): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 900_000);
  let missing: string[];
  for (;;) {
    try {
      missing = await pendingMigrations(pool, migrations);
    } catch (err) {
      opts.onUnreachable?.(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (missing.length === 0) return;
    opts.onWait?.(missing);
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 2_000));
  }
  throw new Error(`schema older than this code: ${missing.join(', ')} not applied (run the migration Job of this image)`);
}
