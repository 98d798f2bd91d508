// Process helpers shared by the local stack: free loopback ports, spawning servers
// detached with their logs in files, waiting for readiness, stopping by pid file.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const LOOPBACK = '127.0.0.1';

/** A port the kernel just gave us on loopback; small race window, acceptable for tests. */
/**
 * A loopback port free right now, for a server started a moment later. Picked at random below the
 * kernel's ephemeral range (32768+ on Linux): a port the kernel hands out with listen(0) is also the
 * kind it gives the outgoing connections of every other test process, so between our check and the
 * server's bind one of them could take it (EADDRINUSE seen in the full suite).
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await canBind(port)) return port;
  }
  throw new Error('no free loopback port found in 20000-31999 after 100 tries');
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, LOOPBACK, () => srv.close(() => resolve(true)));
  });
}

export interface Spawned {
  readonly pid: number;
  readonly logFile: string;
}

/** Starts a long-running server detached from us, stdout/stderr appended to logFile. */
export function spawnDaemon(cmd: string, args: string[], opts: { logFile: string; pidFile?: string; cwd?: string; env?: NodeJS.ProcessEnv }): Spawned {
  fs.mkdirSync(path.dirname(opts.logFile), { recursive: true });
  const out = fs.openSync(opts.logFile, 'a');
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, detached: true, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  child.unref();
  if (!child.pid) throw new Error(`could not start ${cmd}`);
  if (opts.pidFile) fs.writeFileSync(opts.pidFile, String(child.pid));
  return { pid: child.pid, logFile: opts.logFile };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it returns true; bounded in time, and fails fast when the process died. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, opts: { timeoutMs?: number; pid?: number; logFile?: string } = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  while (Date.now() < deadline) {
    if (await check()) return;
    if (opts.pid !== undefined && !isAlive(opts.pid)) break;
    await sleep(50);
  }
  const tail = opts.logFile && fs.existsSync(opts.logFile) ? fs.readFileSync(opts.logFile, 'utf8').split('\n').slice(-20).join('\n') : '';
  throw new Error(`${what} did not become ready${tail ? `; last log lines:\n${tail}` : ''}`);
}

/** SIGTERM (then SIGKILL after graceMs) and wait for the pid to be gone. */
export async function stopPid(pid: number, graceMs = 10_000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!isAlive(pid)) return;
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && isAlive(pid)) await sleep(50);
  if (isAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    while (isAlive(pid)) await sleep(20);
  }
}

export async function stopPidFile(pidFile: string, graceMs?: number): Promise<void> {
  if (!fs.existsSync(pidFile)) return;
  const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  if (pid > 0) await stopPid(pid, graceMs);
  fs.rmSync(pidFile, { force: true });
}

export function portOpen(port: number, host = LOOPBACK): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Makes `dir` owned by `user` (servers like Postgres refuse to run as root). */
export function chownTo(dir: string, user: string): void {
  execFileSync('chown', ['-R', `${user}:${user}`, dir]);
}
