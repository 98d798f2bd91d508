// What a unit of work costs, in figures a loaded machine does not distort: CPU-seconds of the
// processes involved (from /proc, children included), database transactions and Redis commands
// counted by the servers themselves, and the statements Postgres ran (pg_stat_statements, when
// BENCH_PG_STATEMENTS=1 loaded it).
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import type { Redis } from 'ioredis';

/** Linux's USER_HZ, the unit of /proc/<pid>/stat times. */
const CLK_TCK = 100;

interface Stat {
  readonly ppid: number;
  /** utime + stime, and cutime + cstime (children already reaped), seconds. */
  readonly own: number;
  readonly reaped: number;
}

function readStat(pid: number): Stat | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name may hold spaces and parentheses: the fields start after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const n = (i: number) => Number(f[i - 3]);
  return { ppid: n(4), own: (n(14) + n(15)) / CLK_TCK, reaped: (n(16) + n(17)) / CLK_TCK };
}

/** CPU-seconds used so far by `pid` and every process under it (Postgres backends, for one). */
export function treeCpuSeconds(pid: number): number {
  const stats = new Map<number, Stat>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s) stats.set(Number(name), s);
  }
  const children = new Map<number, number[]>();
  for (const [p, s] of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), p]);
  let total = 0;
  const visit = (p: number, root: boolean) => {
    const s = stats.get(p);
    if (!s) return;
    // Reaped children's time is the root's only: below it, it would count twice.
    total += s.own + (root ? s.reaped : 0);
    for (const c of children.get(p) ?? []) visit(c, false);
  };
  visit(pid, true);
  return total;
}

/** Transactions the database committed or rolled back (each autocommit statement is one). */
export async function dbTransactions(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT (xact_commit + xact_rollback)::text AS n FROM pg_stat_database WHERE datname = current_database()');
  return Number(rows[0]!.n);
}

/** Commands Redis processed. */
export async function redisCommands(redis: Redis): Promise<number> {
  return Number(/total_commands_processed:(\d+)/.exec(await redis.info('stats'))?.[1] ?? NaN);
}

/** CPU-seconds used so far by `pid` alone. */
export function processCpuSeconds(pid: number): number {
  return readStat(pid)?.own ?? 0;
}

/** The postmaster's time, its reaped children's, and every live backend's: grows monotonically. */
export function postgresCpuSeconds(dataDir: string): number {
  return treeCpuSeconds(Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]));
}

export interface StatementCost {
  readonly query: string;
  readonly calls: number;
  /** Milliseconds Postgres spent executing it, in total. */
  readonly ms: number;
  readonly rows: number;
}

export interface CostMeter {
  /**
   * CPU-seconds per process group, statements by text (with pg_stat_statements), and the
   * server's write transactions (transaction ids assigned) and WAL bytes since the start.
   */
  stop(): Promise<{ cpu: Record<string, number>; statements: StatementCost[] | null; commits: number; walBytes: number }>;
}

// Read at once and exactly: the next transaction id (ids go only to transactions that write, so the
// difference counts write transactions, not read-only autocommit SELECTs) and the WAL insert position.
// pg_stat_database/pg_stat_wal lag: a pooled connection reports its counts only now and then.
async function dbCounters(pool: pg.Pool): Promise<{ commits: number; walLsn: string }> {
  const { rows } = await pool.query<{ xid: string; lsn: string }>(
    'SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xid, pg_current_wal_insert_lsn()::text AS lsn',
  );
  return { commits: Number(rows[0]!.xid), walLsn: rows[0]!.lsn };
}

export async function startCostMeter(pool: pg.Pool, groups: Record<string, () => number>): Promise<CostMeter> {
  const statements = await pool.query('SELECT pg_stat_statements_reset()').then(() => true, () => false);
  const db0 = await dbCounters(pool);
  const before = Object.fromEntries(Object.entries(groups).map(([k, f]) => [k, f()]));
  return {
    async stop() {
      const cpu = Object.fromEntries(Object.entries(groups).map(([k, f]) => [k, f() - before[k]!]));
      const db1 = await dbCounters(pool);
      const { rows: wal } = await pool.query<{ bytes: string }>('SELECT pg_wal_lsn_diff($1, $2)::text AS bytes', [db1.walLsn, db0.walLsn]);
      const counters = { commits: db1.commits - db0.commits, walBytes: Number(wal[0]!.bytes) };
      if (!statements) return { cpu, statements: null, ...counters };
      const { rows } = await pool.query<{ query: string; calls: string; ms: number; rows: string }>(
        "SELECT query, calls, total_exec_time AS ms, rows FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%pg_stat_wal%' ORDER BY calls DESC",
      );
      return { cpu, statements: rows.map((r) => ({ query: r.query.replace(/\s+/g, ' ').slice(0, 70), calls: Number(r.calls), ms: r.ms, rows: Number(r.rows) })), ...counters };
    },
  };
}
