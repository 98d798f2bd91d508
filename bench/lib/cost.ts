// What a unit of work costs, in figures a loaded machine does not distort: CPU-seconds of the
// processes involved (from /proc, children included) and database transactions and Redis
// commands counted by the servers themselves.
import fs from 'node:fs';
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
