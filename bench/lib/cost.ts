// What a unit of work costs, in figures another process's load does not distort: CPU-seconds
// of the service's processes and of Postgres (its backends and what they did before exiting),
// and the statements Postgres ran (pg_stat_statements, when BENCH_PG_STATEMENTS=1 loaded it).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';

const TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** utime, stime, cutime, cstime of a process, in seconds; null when it is gone. */
function times(pid: number): { own: number; children: number; ppid: number } | null {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields after the command (which may hold spaces and parentheses): state is field 3.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(f[1]), own: (Number(f[11]) + Number(f[12])) / TICKS, children: (Number(f[13]) + Number(f[14])) / TICKS };
}

export function processCpuSeconds(pid: number): number {
  return times(pid)?.own ?? 0;
}

/** The postmaster's own time, its reaped children's, and every live child's: grows monotonically. */
export function postgresCpuSeconds(dataDir: string): number {
  const postmaster = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const main = times(postmaster);
  if (!main) return 0;
  let total = main.own + main.children;
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const t = times(Number(entry));
    if (t && t.ppid === postmaster) total += t.own;
  }
  return total;
}

export interface CostMeter {
  /** CPU-seconds per process group and statements by text since the start. */
  stop(): Promise<{ cpu: Record<string, number>; statements: { query: string; calls: number }[] | null }>;
}

export async function startCostMeter(pool: pg.Pool, groups: Record<string, () => number>): Promise<CostMeter> {
  const statements = await pool.query('SELECT pg_stat_statements_reset()').then(() => true, () => false);
  const before = Object.fromEntries(Object.entries(groups).map(([k, f]) => [k, f()]));
  return {
    async stop() {
      const cpu = Object.fromEntries(Object.entries(groups).map(([k, f]) => [k, f() - before[k]!]));
      if (!statements) return { cpu, statements: null };
      const { rows } = await pool.query<{ query: string; calls: string }>(
        "SELECT query, calls FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC",
      );
      return { cpu, statements: rows.map((r) => ({ query: r.query.replace(/\s+/g, ' ').slice(0, 70), calls: Number(r.calls) })) };
    },
  };
}
