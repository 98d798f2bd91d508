// PgBouncer of the version the presets deploy (scripts/stack/servers.ts), in transaction mode, with the pgbouncer.ini the cdk8s tuning
// renders for the preset: what the cluster's PgBouncer Deployment runs, on loopback.
import fs from 'node:fs';
import path from 'node:path';
import { presets, type PresetName } from '../../cdk8s/src/presets.js';
import { renderPgBouncerIni } from '../../cdk8s/src/tuning/pgbouncer.js';
import { chownTo, isRoot, LOOPBACK, portOpen, spawnDaemon, stopPid, waitFor } from './proc.js';
import { serverCommand } from './servers.js';

export interface PgBouncerOptions {
  readonly dir: string;
  readonly port: number;
  readonly dbPort: number;
  /** The database owner PgBouncer logs in as and clients use. @default 'wa_router' */
  readonly user?: string;
  readonly password: string;
  /** @default 'wa_router' */
  readonly database?: string;
  /** @default 'standard' */
  readonly preset?: PresetName;
  /** PgBouncer's max_prepared_statements; 0 leaves named statements untracked. @default the tuning's */
  readonly maxPreparedStatements?: number;
}

export interface PgBouncerHandle {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  stop(): Promise<void>;
  kill(): Promise<void>;
  /** Start it again on the same port and files (after stop or kill). */
  restart(): Promise<PgBouncerHandle>;
}

export async function startPgBouncer(opts: PgBouncerOptions): Promise<PgBouncerHandle> {
  const user = opts.user ?? 'wa_router';
  const database = opts.database ?? 'wa_router';
  fs.mkdirSync(opts.dir, { recursive: true });
  const authFile = path.join(opts.dir, 'userlist.txt');
  fs.writeFileSync(authFile, `"${user}" "${opts.password.replace(/"/g, '""')}"\n`, { mode: 0o600 });
  const ini = renderPgBouncerIni(presets[opts.preset ?? 'standard'], {
    listenAddr: LOOPBACK,
    listenPort: opts.port,
    dbHost: LOOPBACK,
    dbPort: opts.dbPort,
    dbName: database,
    authFile,
    adminUser: user,
    unixSocketDir: opts.dir,
    logFile: path.join(opts.dir, 'pgbouncer.log'),
    pidFile: path.join(opts.dir, 'pgbouncer.pid'),
    ...(opts.maxPreparedStatements !== undefined ? { maxPreparedStatements: opts.maxPreparedStatements } : {}),
  });
  const iniFile = path.join(opts.dir, 'pgbouncer.ini');
  fs.writeFileSync(iniFile, ini);
  // PgBouncer refuses to run as root.
  const asUser = isRoot() ? 'postgres' : undefined;
  if (asUser) chownTo(opts.dir, asUser);
  const logFile = path.join(opts.dir, 'pgbouncer.out');
  const server = serverCommand('pgbouncer', [iniFile], { asUser });
  const proc = spawnDaemon(server.file, server.args, { logFile, pidFile: path.join(opts.dir, 'pgbouncer.pid.ours') });
  await waitFor('pgbouncer', () => portOpen(opts.port), { pid: proc.pid, logFile: path.join(opts.dir, 'pgbouncer.log'), timeoutMs: 30_000 });
  return {
    url: `postgres://${user}:${encodeURIComponent(opts.password)}@${LOOPBACK}:${opts.port}/${database}`,
    port: opts.port,
    pid: proc.pid,
    stop: () => stopPid(proc.pid, 15_000, 'SIGINT'),
    kill: () => stopPid(proc.pid, 0, 'SIGKILL'),
    restart: () => startPgBouncer(opts),
  };
}
