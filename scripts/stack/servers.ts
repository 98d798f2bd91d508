// The one resolver of server binaries: every Postgres, PgBouncer, Redis and Sentinel the local stack,
// the tests, the benchmarks and the chaos suite start (and the clients they run against them: psql,
// pg_isready, redis-cli) come from the root filesystem scripts/lib/servers.sh builds with the versions
// the presets deploy (versions.json), not from whatever Debian release this machine runs.
//
// A server runs in its own mount namespace with that root's /usr bind-mounted over the machine's:
// its binaries, dynamic loader and libraries are the root's, while paths (data directories, sockets,
// logs), users and loopback ports stay the machine's. unshare, sh and setpriv each exec in place, so
// the pid we record is the server's own (tests SIGKILL it).
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import versions from '../../versions.json' with { type: 'json' };
import { isRoot } from './proc.js';

export { versions };

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Programs the stack runs, by where the server packages install them. */
const PROGRAMS = {
  postgres: `/usr/lib/postgresql/${versions.postgres.series}/bin/postgres`,
  initdb: `/usr/lib/postgresql/${versions.postgres.series}/bin/initdb`,
  pg_isready: `/usr/lib/postgresql/${versions.postgres.series}/bin/pg_isready`,
  psql: `/usr/lib/postgresql/${versions.postgres.series}/bin/psql`,
  pgbouncer: '/usr/sbin/pgbouncer',
  'redis-server': '/usr/bin/redis-server',
  'redis-sentinel': '/usr/bin/redis-sentinel',
  'redis-cli': '/usr/bin/redis-cli',
  // The charts' shell scripts (probes, pre-stop hooks), with the root's redis-cli as the pods have it.
  sh: '/bin/sh',
} as const;

export type ServerProgram = keyof typeof PROGRAMS;

let root: string | undefined;

/** The servers' root filesystem, built on first use (minutes, once per machine and versions.json). */
export function serversRoot(): string {
  root ??= execFileSync(path.join(REPO, 'scripts/lib/servers.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  return root;
}

export interface ServerCommand {
  readonly file: string;
  readonly args: string[];
}

/**
 * The command line that runs `program` from the servers' root, as `asUser` when given (Postgres and
 * PgBouncer refuse to run as root). Pass it to spawn/execFile as `file, args`.
 */
export function serverCommand(program: ServerProgram, args: readonly string[], opts: { asUser?: string } = {}): ServerCommand {
  const user = opts.asUser ? ['setpriv', `--reuid=${opts.asUser}`, `--regid=${opts.asUser}`, '--init-groups', '--'] : [];
  // Without root, a user namespace mapping us to ourselves grants the bind mount.
  const ns = isRoot() ? ['--mount'] : ['--user', '--map-current-user', '--mount'];
  return {
    file: 'unshare',
    args: [...ns, '--propagation', 'private', '--', '/bin/sh', '-c', 'mount --bind "$0/usr" /usr && exec "$@"', serversRoot(), ...user, PROGRAMS[program], ...args],
  };
}

/** Runs a short-lived client (psql, pg_isready, redis-cli) from the servers' root; its stdout. */
export function runServerProgram(program: ServerProgram, args: readonly string[], opts: { asUser?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): string {
  const cmd = serverCommand(program, args, opts);
  return execFileSync(cmd.file, cmd.args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: opts.env, timeout: opts.timeoutMs });
}
