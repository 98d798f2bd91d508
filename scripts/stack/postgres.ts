// A real PostgreSQL of the version the presets deploy (scripts/stack/servers.ts) in a directory of
// ours, on a loopback port.
import fs from 'node:fs';
import path from 'node:path';
import { chownTo, isRoot, portOpen, spawnDaemon, stopPid, waitFor, LOOPBACK } from './proc.js';
import { runServerProgram, serverCommand } from './servers.js';

export interface PostgresOptions {
  /** Directory for data, socket and log; created when missing. */
  readonly dir: string;
  readonly port: number;
  readonly password: string;
  /** Extra postgresql.conf text (the tuning rendered for a preset). */
  readonly conf?: string;
  /**
   * Trade crash safety for speed (fsync off): only for throwaway test clusters.
   * @default false
   */
  readonly ephemeral?: boolean;
  readonly database?: string;
}

export interface PostgresHandle {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly dataDir: string;
  stop(): Promise<void>;
  /** SIGKILL, for fault injection. */
  kill(): Promise<void>;
}

const PG_USER = 'wa_router';

export async function startPostgres(opts: PostgresOptions): Promise<PostgresHandle> {
  const dataDir = path.join(opts.dir, 'data');
  const logFile = path.join(opts.dir, 'postgres.log');
  const database = opts.database ?? 'wa_router';
  const asUser = isRoot() ? 'postgres' : undefined;
  fs.mkdirSync(opts.dir, { recursive: true });
  const fresh = !fs.existsSync(path.join(dataDir, 'PG_VERSION'));
  if (fresh) {
    const pwfile = path.join(opts.dir, '.pwfile');
    fs.writeFileSync(pwfile, opts.password, { mode: 0o600 });
    if (asUser) chownTo(opts.dir, asUser);
    runServerProgram('initdb', ['-D', dataDir, '-U', PG_USER, '--pwfile', pwfile, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'], { asUser });
    fs.rmSync(pwfile);
  }
  const conf = [
    '# written by scripts/stack/postgres.ts',
    opts.conf ?? '',
    `listen_addresses = '${LOOPBACK}'`,
    `port = ${opts.port}`,
    `unix_socket_directories = '${opts.dir}'`,
    opts.ephemeral ? 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off' : '',
  ].join('\n');
  fs.writeFileSync(path.join(dataDir, 'postgresql.auto.conf'), conf + '\n');
  if (asUser) chownTo(opts.dir, asUser);
  const server = serverCommand('postgres', ['-D', dataDir], { asUser });
  const proc = spawnDaemon(server.file, server.args, { logFile, pidFile: path.join(opts.dir, 'postgres.pid.ours') });
  await waitFor('postgres', () => portOpen(opts.port), { pid: proc.pid, logFile, timeoutMs: 60_000 });
  // The socket accepts before recovery ends; pg_isready tells when it takes queries.
  await waitFor('postgres recovery', () => {
    try {
      runServerProgram('pg_isready', ['-h', LOOPBACK, '-p', String(opts.port), '-q']);
      return true;
    } catch {
      return false;
    }
  }, { pid: proc.pid, logFile, timeoutMs: 60_000 });
  if (fresh) {
    runServerProgram('psql', ['-h', opts.dir, '-p', String(opts.port), '-U', PG_USER, '-d', 'postgres', '-qc', `CREATE DATABASE ${database}`]);
  }
  const url = `postgres://${PG_USER}:${encodeURIComponent(opts.password)}@${LOOPBACK}:${opts.port}/${database}`;
  return {
    url,
    port: opts.port,
    pid: proc.pid,
    dataDir,
    // Fast shutdown: SIGINT makes postgres abort transactions and exit cleanly.
    stop: () => stopPid(proc.pid, 30_000, 'SIGINT'),
    kill: () => stopPid(proc.pid, 0, 'SIGKILL'),
  };
}
