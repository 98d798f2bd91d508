// The benchmark stack: real Postgres and Redis in a temp dir with production settings
// (durable commits, AOF everysec), and service processes started from dist/.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startPostgres, type PostgresHandle } from '../../scripts/stack/postgres.js';
import { startRedis, type RedisHandle } from '../../scripts/stack/redis.js';
import { freePort, sleep } from '../../scripts/stack/proc.js';
import { localTuning } from '../../scripts/stack/tuning.js';

export const ROOT = path.resolve(fileURLToPath(new URL('../..', import.meta.url)));
// BENCH_SERVICE_DIST=<dir>: the service built elsewhere (another commit's dist/, for an A/B run beside this one).
const MAIN = process.env.BENCH_SERVICE_DIST ? path.resolve(process.env.BENCH_SERVICE_DIST, 'main.js') : path.join(ROOT, 'service', 'dist', 'main.js');

export const APP_SECRET = 'bench-app-secret-0123456789';
export const PHONE_NUMBER_ID = '106540352242922';

export interface BenchStack {
  readonly dir: string;
  readonly postgres: PostgresHandle;
  readonly redis: RedisHandle;
  readonly pool: pg.Pool;
  serviceEnv(extra?: Record<string, string>): Record<string, string>;
  stop(): Promise<void>;
}

export async function startBenchStack(): Promise<BenchStack> {
  if (!fs.existsSync(MAIN)) throw new Error('service/dist/main.js missing: run `make build` first');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-router-bench-'));
  fs.chmodSync(dir, 0o755);
  const password = 'bench-' + Math.random().toString(36).slice(2);
  const tuning = await localTuning();
  // BENCH_PG_STATEMENTS=1: statements per unit of work are counted (pg_stat_statements costs a little on every statement).
  const statements = process.env.BENCH_PG_STATEMENTS === '1';
  const pgConf = tuning.postgres + (statements ? "\nshared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n" : '');
  const [postgres, redis] = await Promise.all([
    // Commit times are tracked so the fan-out benchmark times from a row's commit (a few bytes per commit).
    (async () => startPostgres({ dir: path.join(dir, 'postgres'), port: await freePort(), password, conf: `${pgConf}\ntrack_commit_timestamp = on` }))(),
    (async () => startRedis({ dir: path.join(dir, 'redis'), port: await freePort(), password, conf: tuning.redis, maxmemory: '2gb' }))(),
  ]);
  const pool = new pg.Pool({ connectionString: postgres.url, max: 16 });
  // Idle connections die when Postgres stops at the end; nothing to do about it.
  pool.on('error', () => undefined);
  const env = (extra: Record<string, string> = {}) => ({
    PATH: process.env.PATH ?? '',
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
    DATABASE_URL: postgres.url,
    REDIS_URL: redis.url,
    WHATSAPP_APP_SECRET: APP_SECRET,
    WHATSAPP_VERIFY_TOKEN: 'bench-verify',
    WHATSAPP_PHONE_NUMBER_ID: PHONE_NUMBER_ID,
    WHATSAPP_ACCESS_TOKEN: 'bench-token',
    API_TOKEN: 'bench-api-token-0123456789',
    RATE_LIMIT_PER_MINUTE: '0',
    ...extra,
  });
  await runRole('migrate', env());
  if (statements) await pool.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  return {
    dir,
    postgres,
    redis,
    pool,
    serviceEnv: env,
    async stop() {
      await pool.end();
      await Promise.all([postgres.stop(), redis.stop()]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Between benchmarks and before a baseline: the previous run's writes (WAL, dead tuples, dirty
 * pages) must not be paid by the next one, on a 2-core machine least of all.
 */
export async function settle(stack: BenchStack): Promise<void> {
  await stack.pool.query('VACUUM ANALYZE');
  await stack.pool.query('CHECKPOINT');
  await sleep(2_000);
}

export function runRole(role: string, env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [MAIN, role], { env, stdio: ['ignore', 'ignore', 'inherit'] });
    c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${role} exited ${code}`))));
  });
}

export interface Proc {
  readonly child: ChildProcess;
  readonly port: number;
  stop(): Promise<void>;
}

/** Starts a service role and waits for its /readyz. */
export async function startRole(role: 'web' | 'worker' | 'all', env: Record<string, string>): Promise<Proc> {
  const port = await freePort();
  // BENCH_CPU_PROF=<dir>: each service process writes a V8 CPU profile there when it stops (open it in Chrome's DevTools).
  const profile = process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(process.env.BENCH_CPU_PROF)] : [];
  const child = spawn(process.execPath, [...profile, MAIN, role], { env: { ...env, PORT: String(port) }, stdio: ['ignore', 'ignore', 'inherit'] });
  await waitReady(`http://127.0.0.1:${port}/readyz`, child);
  return { child, port, stop: () => stopChild(child) };
}

/** Starts a baseline server script (it reports 'ready' over IPC). */
export async function startBaseline(script: string, args: string[] = []): Promise<Proc> {
  const port = await freePort();
  const child = fork(script, [String(port), ...args], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`baseline ${script} exited ${code}`)));
  });
  return { child, port, stop: () => stopChild(child) };
}

const READY_TIMEOUT_MS = 120_000;

async function waitReady(url: string, child: ChildProcess): Promise<void> {
  // A host loaded by other work (load average 40+) takes longer than 30 s to start a process.
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`process exited ${child.exitCode} before ready`);
    const ok = await fetch(url).then((r) => r.status === 200, () => false);
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${url} not ready in ${READY_TIMEOUT_MS / 1000} s`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(t);
}
