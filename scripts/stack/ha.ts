// The production topology on one host: tuned Postgres behind PgBouncer (transaction mode), Redis
// master + replicas watched by 3 Sentinels, several web and worker processes of the service
// connected through Sentinel and PgBouncer, and nginx (least_conn) in front of the web processes.
// Used by `make up HA=1`, the chaos suite and the replicated benchmarks. Every process's pid and
// log is under `dir`; every component can be killed and started again for fault injection.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { presets, type PresetName } from '../../cdk8s/src/presets.js';
import { renderPostgresConf, renderRedisConf } from '../../cdk8s/src/tuning/index.js';
import { startPgBouncer, type PgBouncerHandle } from './pgbouncer.js';
import { startPostgres, type PostgresHandle } from './postgres.js';
import { freePort, isAlive, LOOPBACK, portOpen, spawnDaemon, stopPid, stopPidFile, waitFor } from './proc.js';
import { startRedis, type RedisHandle } from './redis.js';
import { startSentinel, type SentinelHandle } from './sentinel.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MAIN = path.join(ROOT, 'service', 'dist', 'main.js');
export const MASTER_NAME = 'wa-router';

export interface HaStackOptions {
  /** Everything lives here: data, configs, logs (`logs/`), pids (`pids/`). */
  readonly dir: string;
  /** @default 2 */
  readonly webs?: number;
  /** @default 2 */
  readonly workers?: number;
  /** @default 2 */
  readonly redisReplicas?: number;
  /** @default 'replicated' */
  readonly ackDurability?: 'local' | 'replicated';
  /** Whose tuning the servers run, scaled to this machine. @default 'standard' */
  readonly preset?: PresetName;
  /**
   * Sentinel's down-after: short so tests see a failover in seconds (the presets' is 5000). Not
   * 1000: a Sentinel pings the master it just switched to at once, and on a loaded machine the first
   * PONG took 1.1 s; the leader then saw its new master down, counted the other Sentinels' "down"
   * answers about the old one as agreement (it keeps them across the switch) and failed over a
   * second time, leaving the webhooks without an in-sync replica for 15 s (the demoted master is
   * converted ~10 s later, then resyncs in full). @default 2000
   */
  readonly downAfterMs?: number;
  /** @default 5000 */
  readonly failoverTimeoutMs?: number;
  /** Port nginx listens on. @default a free one */
  readonly lbPort?: number;
  /** Extra environment for every service process (GRAPH_API_BASE_URL, WORKER_CONCURRENCY, ...). */
  readonly env?: Record<string, string>;
  /** Secrets; generated when omitted. */
  readonly secrets?: Partial<HaSecrets>;
  /** Start the service processes too. @default true */
  readonly service?: boolean;
}

export interface HaSecrets {
  readonly password: string;
  readonly appSecret: string;
  readonly verifyToken: string;
  readonly apiToken: string;
  readonly phoneNumberId: string;
  readonly accessToken: string;
}

export interface ServiceProcess {
  readonly name: string;
  readonly role: 'web' | 'worker';
  readonly port: number;
  pid: number;
  readonly logFile: string;
  /** SIGTERM: the service drains in-flight requests and jobs, then exits. */
  stop(): Promise<void>;
  kill(): Promise<void>;
  start(): Promise<void>;
  alive(): boolean;
}

export interface HaStack {
  readonly dir: string;
  /** nginx in front of the web processes: where Meta's webhooks go. */
  readonly url: string;
  readonly postgres: PostgresHandle;
  readonly pgbouncer: PgBouncerHandle;
  /** Index 0 starts as the master; after a failover ask `master()`. */
  readonly redis: RedisHandle[];
  readonly sentinels: SentinelHandle[];
  readonly webs: ServiceProcess[];
  readonly workers: ServiceProcess[];
  readonly secrets: HaSecrets;
  /** Environment of the service processes (DATABASE_URL through PgBouncer, REDIS_SENTINELS). */
  readonly env: Record<string, string>;
  /** Postgres directly, for verification queries that must not depend on PgBouncer. */
  readonly directDatabaseUrl: string;
  /** The master the Sentinels agree on now. */
  master(): Promise<{ host: string; port: number; index: number }>;
  /** Starts Redis `index` again on its port and data (after a kill); it rejoins as a replica. */
  startRedis(index: number): Promise<void>;
  startPostgres(): Promise<void>;
  startPgBouncer(): Promise<void>;
  stop(): Promise<void>;
}

const rand = () => Math.random().toString(36).slice(2, 12) + Math.random().toString(36).slice(2, 12);

async function sentinelMaster(ports: number[]): Promise<{ host: string; port: number } | undefined> {
  const { Redis } = await import('ioredis');
  for (const port of ports) {
    const c = new Redis({ host: LOOPBACK, port, lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 1_000, retryStrategy: () => null });
    try {
      await c.connect();
      const r = (await c.call('SENTINEL', 'get-master-addr-by-name', MASTER_NAME)) as [string, string] | null;
      if (r) return { host: r[0], port: Number(r[1]) };
    } catch {
      // this Sentinel is down; ask the next
    } finally {
      c.disconnect();
    }
  }
  return undefined;
}

export async function startHaStack(opts: HaStackOptions): Promise<HaStack> {
  const started: { stop(): Promise<void> }[] = [];
  try {
    return await start(opts, started);
  } catch (err) {
    // Half a stack left running would hold ports and memory: stop what came up, newest first.
    for (const s of started.reverse()) await s.stop().catch(() => undefined);
    throw err;
  }
}

async function start(opts: HaStackOptions, started: { stop(): Promise<void> }[]): Promise<HaStack> {
  if (opts.service !== false && !fs.existsSync(MAIN)) throw new Error('service/dist/main.js missing: run `make build` first');
  const dir = opts.dir;
  const logs = path.join(dir, 'logs');
  const pids = path.join(dir, 'pids');
  fs.mkdirSync(logs, { recursive: true });
  fs.mkdirSync(pids, { recursive: true });
  // Postgres and PgBouncer run as the postgres user when we are root.
  fs.chmodSync(dir, 0o755);
  const preset = presets[opts.preset ?? 'standard'];
  const secrets: HaSecrets = {
    password: rand(), appSecret: rand(), verifyToken: rand(), apiToken: rand() + rand(),
    phoneNumberId: '106540352242922', accessToken: `dev-${rand()}`, ...opts.secrets,
  };
  // This machine, not the preset's node: memory settings follow it, the rest is the preset's.
  const machine = { cpuCores: os.availableParallelism(), memoryGiB: Math.min(4, os.totalmem() / 2 ** 30 / 4) };

  const pgPort = await freePort();
  const postgresOpts = { dir: path.join(dir, 'postgres'), port: pgPort, password: secrets.password, conf: renderPostgresConf(preset, { scaleTo: machine }) };
  let postgres = await startPostgres(postgresOpts);
  started.push({ stop: () => postgres.stop() });
  const bouncerOpts = { dir: path.join(dir, 'pgbouncer'), port: await freePort(), dbPort: pgPort, password: secrets.password, preset: opts.preset ?? 'standard' };
  let pgbouncer = await startPgBouncer(bouncerOpts);
  started.push({ stop: () => pgbouncer.stop() });

  const redisConf = renderRedisConf(preset, { scaleTo: { cpuCores: machine.cpuCores, memoryGiB: 1 } });
  const redisPorts = await Promise.all(Array.from({ length: 1 + (opts.redisReplicas ?? 2) }, () => freePort()));
  const redisOpts = redisPorts.map((port, i) => ({
    dir: path.join(dir, `redis-${i}`), port, password: secrets.password, conf: redisConf, maxmemory: '512mb',
    replicaOf: i === 0 ? undefined : { host: LOOPBACK, port: redisPorts[0]! },
  }));
  const redis: RedisHandle[] = [];
  for (const o of redisOpts) {
    const r = await startRedis(o);
    redis.push(r);
    started.push(r);
  }
  const sentinelPorts = await Promise.all([0, 1, 2].map(() => freePort()));
  const sentinels = await Promise.all(sentinelPorts.map((port, i) => startSentinel({
    dir: path.join(dir, `sentinel-${i}`), port, masterPort: redisPorts[0]!, password: secrets.password,
    downAfterMs: opts.downAfterMs ?? 2_000, failoverTimeoutMs: opts.failoverTimeoutMs ?? 5_000, preset: opts.preset ?? 'standard',
  })));
  started.push(...sentinels);
  // Sentinels discover the replicas and each other through the master within a few seconds.
  await waitFor('sentinels to see the replicas', async () => {
    const { Redis } = await import('ioredis');
    const c = new Redis({ host: LOOPBACK, port: sentinelPorts[0]!, maxRetriesPerRequest: 1, lazyConnect: true });
    try {
      await c.connect();
      const replicas = (await c.call('SENTINEL', 'replicas', MASTER_NAME)) as unknown[];
      const others = (await c.call('SENTINEL', 'sentinels', MASTER_NAME)) as unknown[];
      return replicas.length >= redisPorts.length - 1 && others.length >= sentinelPorts.length - 1;
    } catch {
      return false;
    } finally {
      c.disconnect();
    }
  }, { timeoutMs: 30_000 });

  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    HOST: LOOPBACK,
    DATABASE_URL: pgbouncer.url,
    // The tuning's PgBouncer tracks them (max_prepared_statements), as the chart's does.
    DATABASE_PREPARED_STATEMENTS: 'true',
    REDIS_SENTINELS: sentinelPorts.map((p) => `${LOOPBACK}:${p}`).join(','),
    REDIS_MASTER_NAME: MASTER_NAME,
    REDIS_PASSWORD: secrets.password,
    ACK_DURABILITY: opts.ackDurability ?? 'replicated',
    WHATSAPP_APP_SECRET: secrets.appSecret,
    WHATSAPP_VERIFY_TOKEN: secrets.verifyToken,
    WHATSAPP_PHONE_NUMBER_ID: secrets.phoneNumberId,
    WHATSAPP_ACCESS_TOKEN: secrets.accessToken,
    API_TOKEN: secrets.apiToken,
    ...opts.env,
  };

  const webs: ServiceProcess[] = [];
  const workers: ServiceProcess[] = [];
  let nginxPid = 0;
  let lbPort = opts.lbPort ?? 0;
  if (opts.service !== false) {
    await runMigrate(env, path.join(logs, 'migrate.log'));
    for (let i = 0; i < (opts.webs ?? 2); i++) webs.push(await serviceProcess(`web-${i + 1}`, 'web', env, logs, pids));
    for (let i = 0; i < (opts.workers ?? 2); i++) workers.push(await serviceProcess(`worker-${i + 1}`, 'worker', env, logs, pids));
    started.push(...webs, ...workers);
    await Promise.all([...webs, ...workers].map((p) => p.start()));
    lbPort = lbPort || (await freePort());
    nginxPid = await startNginx(dir, lbPort, webs.map((w) => w.port));
    started.push({ stop: () => stopPid(nginxPid, 5_000, 'SIGQUIT') });
  }
  fs.writeFileSync(path.join(dir, 'stack.json'), JSON.stringify({ url: `http://${LOOPBACK}:${lbPort}`, env, pgPort, redisPorts, sentinelPorts }, null, 2));

  const stack: HaStack = {
    dir,
    url: `http://${LOOPBACK}:${lbPort}`,
    get postgres() { return postgres; },
    get pgbouncer() { return pgbouncer; },
    redis,
    sentinels,
    webs,
    workers,
    secrets,
    env,
    directDatabaseUrl: postgres.url,
    async master() {
      const m = await sentinelMaster(sentinelPorts);
      if (!m) throw new Error('no Sentinel answers with a master');
      return { ...m, index: redisPorts.indexOf(m.port) };
    },
    async startRedis(index) {
      // It comes back with its old config (a master's); the Sentinels turn it into a replica.
      redis[index] = await startRedis(redisOpts[index]!);
    },
    async startPostgres() {
      postgres = await startPostgres(postgresOpts);
    },
    async startPgBouncer() {
      pgbouncer = await startPgBouncer(bouncerOpts);
    },
    async stop() {
      if (nginxPid) await stopPid(nginxPid, 5_000, 'SIGQUIT');
      await Promise.all([...webs, ...workers].map((p) => p.stop()));
      await Promise.all(sentinels.map((s) => s.stop()));
      await Promise.all(redis.map((r) => r.stop()));
      await pgbouncer.stop();
      await postgres.stop();
    },
  };
  return stack;
}

function runMigrate(env: Record<string, string>, logFile: string): Promise<void> {
  const out = fs.openSync(logFile, 'a');
  return new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, 'migrate'], { env, stdio: ['ignore', out, out], timeout: 120_000 });
    child.once('exit', (code) => {
      fs.closeSync(out);
      if (code === 0) resolve();
      else reject(new Error(`migrate exited ${code}; see ${logFile}`));
    });
  });
}

async function serviceProcess(name: string, role: 'web' | 'worker', env: Record<string, string>, logs: string, pids: string): Promise<ServiceProcess> {
  const port = await freePort();
  const logFile = path.join(logs, `${name}.log`);
  const pidFile = path.join(pids, `${name}.pid`);
  const proc: ServiceProcess = {
    name, role, port, pid: 0, logFile,
    alive: () => proc.pid > 0 && isAlive(proc.pid),
    async start() {
      const child = spawnDaemon(process.execPath, [MAIN, role], { env: { ...env, PORT: String(port) }, logFile, pidFile });
      proc.pid = child.pid;
      await waitFor(`${name} /readyz`, async () => (await fetch(`http://${LOOPBACK}:${port}/readyz`).catch(() => null))?.status === 200, { pid: child.pid, logFile, timeoutMs: 60_000 });
    },
    // pid 0 would signal our own process group: a process never started has nothing to stop.
    stop: async () => (proc.pid > 0 ? stopPid(proc.pid, 35_000, 'SIGTERM') : undefined),
    kill: async () => (proc.pid > 0 ? stopPid(proc.pid, 0, 'SIGKILL') : undefined),
  };
  return proc;
}

/** nginx from Debian: least_conn over the web processes, keep-alive upstreams, 503s passed through. */
async function startNginx(dir: string, port: number, upstreams: number[]): Promise<number> {
  const prefix = path.join(dir, 'nginx');
  fs.mkdirSync(path.join(prefix, 'tmp'), { recursive: true });
  const conf = `# written by scripts/stack/ha.ts
daemon off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  upstream web {
    least_conn;
${upstreams.map((p) => `    server ${LOOPBACK}:${p} max_fails=1 fail_timeout=2s;`).join('\n')}
    keepalive 128;
  }
  server {
    listen ${LOOPBACK}:${port};
    # Meta's webhooks are at most 3 MB; the service answers 413 above its own limit.
    client_max_body_size 4m;
    client_body_buffer_size 4m;
    location / {
      proxy_pass http://web;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      # A web process that died mid-request: try another. Duplicates are harmless (wamid is unique);
      # a 503 (Redis unavailable) goes back to the sender, whose retry is the safety net.
      proxy_next_upstream error timeout non_idempotent;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 2s;
      proxy_read_timeout 30s;
    }
  }
}
`;
  const confFile = path.join(prefix, 'nginx.conf');
  fs.writeFileSync(confFile, conf);
  const child = spawnDaemon('nginx', ['-p', prefix, '-c', confFile, '-e', path.join(prefix, 'error.log')], { logFile: path.join(prefix, 'nginx.out'), pidFile: path.join(dir, 'pids', 'nginx.pid') });
  await waitFor('nginx', () => portOpen(port), { pid: child.pid, logFile: path.join(prefix, 'error.log'), timeoutMs: 15_000 });
  return child.pid;
}

/** Stops an HA stack left running in `dir` (make up HA=1) from its pid files: service, nginx, stores. */
export async function stopHaDir(dir: string): Promise<void> {
  const pidsDir = path.join(dir, 'pids');
  const names = fs.existsSync(pidsDir) ? fs.readdirSync(pidsDir).filter((f) => f.endsWith('.pid')) : [];
  // The service first (it drains), then nginx, then the stores.
  for (const f of names.sort((a, b) => Number(a.startsWith('nginx')) - Number(b.startsWith('nginx')))) await stopPidFile(path.join(pidsDir, f), 35_000);
  const stores = fs.existsSync(dir) ? fs.readdirSync(dir).filter((d) => /^(sentinel|redis|pgbouncer|postgres)/.test(d)) : [];
  for (const d of stores.sort((a, b) => ['sent', 'redi', 'pgbo', 'post'].indexOf(a.slice(0, 4)) - ['sent', 'redi', 'pgbo', 'post'].indexOf(b.slice(0, 4)))) {
    for (const f of fs.readdirSync(path.join(dir, d)).filter((x) => x.endsWith('.pid.ours'))) await stopPidFile(path.join(dir, d, f), 30_000);
  }
}

