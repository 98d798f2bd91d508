// CPU time of processes from /proc: what a busy, shared machine does not distort, unlike latency.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** The fields after the command name of /proc/<pid>/stat (the name may hold spaces), or null once it exited. */
function statFields(pid: number): string[] | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** utime + stime of a process, in seconds. */
export function cpuSeconds(pid: number): number {
  const f = statFields(pid);
  if (!f) throw new Error(`process ${pid} is gone`);
  return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
}

/**
 * utime + stime of a process's children by pid (a postmaster's backends and helpers), in seconds.
 * Compare two readings only over a span in which none of them exits (its time leaves the sum).
 */
export function childrenCpuSeconds(parent: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const f = statFields(Number(d));
    if (f && Number(f[1]) === parent) out.set(Number(d), (Number(f[11]) + Number(f[12])) / CLOCK_TICKS);
  }
  return out;
}

/** CPU seconds the children spent between two readings (a child born in between counts from zero). */
export function childrenCpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let s = 0;
  for (const [pid, t] of after) s += t - (before.get(pid) ?? 0);
  return s;
}
