// preset → pgbouncer.ini. Transaction pooling: the service keeps no session state, so one server
// connection serves many clients; its named prepared statements (DATABASE_PREPARED_STATEMENTS, which
// the chart turns on) are tracked by PgBouncer.
import type { Preset } from '../presets.js';

export interface PgBouncerIniOptions {
  /** @default MAX_PREPARED_STATEMENTS */
  readonly maxPreparedStatements?: number;
  /** @default '0.0.0.0' */
  readonly listenAddr?: string;
  /** @default 6432 */
  readonly listenPort?: number;
  readonly dbHost: string;
  /** @default 5432 */
  readonly dbPort?: number;
  /** Database name clients use and the server has. @default 'wa_router' */
  readonly dbName?: string;
  /** userlist.txt path ("user" "password" per line). */
  readonly authFile: string;
  /** Allowed to run SHOW/RELOAD on the admin console. @default 'wa_router' */
  readonly adminUser?: string;
  /** Unix socket directory; '' turns the socket off (containers). @default '' */
  readonly unixSocketDir?: string;
  readonly logFile?: string;
  readonly pidFile?: string;
}

/**
 * Protocol-level named prepared statements PgBouncer (1.21+) keeps per server connection, preparing
 * one on whichever server connection a transaction lands on. 0 passes them through untracked, and a
 * statement prepared on one server connection then fails on another. Room for every statement the
 * service names (one per inbox filter mix, the messages page, the token check: a few dozen).
 */
export const MAX_PREPARED_STATEMENTS = 200;

/** The service's own statement_timeout (service/src/store/pool.ts), applied to server connections. */
export const STATEMENT_TIMEOUT_MS = 60_000;

export function renderPgBouncerIni(preset: Preset, opts: PgBouncerIniOptions): string {
  const b = preset.pgbouncer;
  const db = opts.dbName ?? 'wa_router';
  const admin = opts.adminUser ?? 'wa_router';
  const settings: [string, string | number][] = [
    ['listen_addr', opts.listenAddr ?? '0.0.0.0'],
    ['listen_port', opts.listenPort ?? 6432],
    ['unix_socket_dir', opts.unixSocketDir ?? ''],
    ['auth_type', 'scram-sha-256'],
    ['auth_file', opts.authFile],
    ['admin_users', admin],
    ['stats_users', admin],
    ['pool_mode', b.poolMode],
    ['max_client_conn', b.maxClientConn],
    ['default_pool_size', b.defaultPoolSize],
    ['min_pool_size', Math.min(5, b.defaultPoolSize)],
    ['reserve_pool_size', b.reservePoolSize],
    // A client waits this long for a server connection before the reserve opens.
    ['reserve_pool_timeout', 3],
    ['max_db_connections', b.maxDbConnections],
    ['server_idle_timeout', b.serverIdleTimeout],
    ['server_lifetime', 3600],
    // Clients queue rather than fail during a Postgres restart; the app's own timeout is shorter.
    ['query_wait_timeout', 120],
    ['server_connect_timeout', 5],
    ['server_login_retry', 2],
    ['server_reset_query', b.poolMode === 'transaction' ? '' : 'DISCARD ALL'],
    ['max_prepared_statements', opts.maxPreparedStatements ?? MAX_PREPARED_STATEMENTS],
    // PgBouncer refuses startup parameters it does not track. The service sends statement_timeout
    // (it holds on direct connections); through PgBouncer the server connections get it from
    // connect_query below instead, so a runaway query is cut either way.
    ['ignore_startup_parameters', 'extra_float_digits,options,statement_timeout'],
    ['tcp_keepalive', 1],
    ['log_connections', 0],
    ['log_disconnections', 0],
    ['log_pooler_errors', 1],
    ['stats_period', 60],
  ];
  if (opts.logFile) settings.push(['logfile', opts.logFile]);
  if (opts.pidFile) settings.push(['pidfile', opts.pidFile]);
  return [
    `; pgbouncer.ini for the ${preset.name} preset, written by wa-router's tuning (do not edit: change the preset)`,
    '[databases]',
    `${db} = host=${opts.dbHost} port=${opts.dbPort ?? 5432} dbname=${db} connect_query='SET statement_timeout = ${STATEMENT_TIMEOUT_MS}'`,
    '',
    '[pgbouncer]',
    ...settings.map(([k, v]) => `${k} = ${v}`),
    '',
  ].join('\n');
}
