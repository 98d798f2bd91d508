// The Postgres pool. Written for PgBouncer transaction mode: no session state, and no named
// prepared statements (node-postgres only prepares when a query is given a `name`) unless
// DATABASE_PREPARED_STATEMENTS says the database side tracks them (PgBouncer 1.21+ with
// max_prepared_statements > 0, or a direct connection).
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Config } from '../config/env.js';

// bigint ids and counts fit in JS numbers for any realistic deployment; parse them as numbers.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

/** Pools created with DATABASE_PREPARED_STATEMENTS=true. */
const preparing = new WeakSet<pg.Pool>();
const names = new Map<string, string>();

export function createPool(config: Config, applicationName: string, onError?: (err: Error) => void): pg.Pool {
  const pool = new pg.Pool({
    connectionString: config.DATABASE_URL,
    max: config.DB_POOL_MAX,
    application_name: applicationName,
    // Fail fast while Postgres or PgBouncer is down: jobs are retried, requests answer 503.
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    // A startup parameter: it holds on direct connections. PgBouncer drops it (it tracks no such
    // parameter) and sets the same value on its server connections (cdk8s/src/tuning/pgbouncer.ts).
    statement_timeout: 60_000,
    query_timeout: config.DB_QUERY_TIMEOUT_MS,
    keepAlive: true,
  });
  // An idle connection dropped by Postgres or PgBouncer (restart, failover) must not crash
  // the process: the pool replaces it on the next checkout.
  pool.on('error', (err) => onError?.(err));
  if (config.DATABASE_PREPARED_STATEMENTS) preparing.add(pool);
  return pool;
}

/**
 * A statement a connection plans once and then runs by name when the pool may prepare
 * (DATABASE_PREPARED_STATEMENTS), else an unnamed one planned on every run: the inbox's pages
 * spend as much CPU planning a five-table join as running it. Only for statements whose plan
 * suits every value of their parameters (a generic plan), and whose texts are a bounded set (one
 * per filter mix): each name stays prepared on every server connection it ran on.
 */
export function statement(pool: Pool, text: string, values: unknown[]): pg.QueryConfig {
  if (!preparing.has(pool)) return { text, values };
  let name = names.get(text);
  if (name === undefined) {
    name = `wa_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    names.set(text, name);
  }
  return { name, text, values };
}

/** Runs fn in a transaction on one connection; rolls back on error. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  // pg-pool stops listening for 'error' on a client it hands out: a connection cut while checked
  // out (Postgres or PgBouncer restarting) would be an unhandled 'error' event and kill the process.
  // The query in flight rejects on its own; this only keeps the event handled and the client dropped.
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    // A query that timed out may still answer later: that connection must not be reused.
    if (!broken && isQueryTimeout(err)) broken = err as Error;
    if (!broken) await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.removeListener('error', onError);
    // A broken connection goes back as destroyed, not into the pool.
    client.release(broken);
  }
}

/** The pool's client-side query timeout (DB_QUERY_TIMEOUT_MS) fired. */
export function isQueryTimeout(err: unknown): boolean {
  return err instanceof Error && err.message === 'Query read timeout';
}

const TRANSIENT_CODES = new Set(['40001', '40P01', '55P03', '57P01', '57P02', '57P03', '53300', '53400']);
const TRANSIENT_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * True for failures that say "try again later" (database down, restarting, overloaded,
 * deadlock), as opposed to a row the database will never accept.
 */
export function isTransientDbError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (TRANSIENT_CODES.has(code) || TRANSIENT_NODE_CODES.has(code)) return true;
    // Class 08: connection exceptions (PgBouncer reports its own failures as 08P01).
    if (code.startsWith('08')) return true;
  }
  return /Connection terminated|Query read timeout|timeout exceeded when trying to connect|Client has encountered a connection error|connect ECONNREFUSED|server conn crashed|no more connections allowed/i.test(err.message);
}
