// The rendered files are accepted by the real servers (Postgres, PgBouncer, Redis and Sentinel of the
// versions the presets deploy, scripts/stack/servers.ts) and mean what the preset says, read back from the running processes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { presets, synthManifests } from '../src/index.js';
import { confMap, container, find, type Json } from './helpers.js';
import { freePort, LOOPBACK, portOpen, spawnDaemon, stopPid, waitFor } from '../../scripts/stack/proc.js';
import { startPostgres, type PostgresHandle } from '../../scripts/stack/postgres.js';
import { runServerProgram, serverCommand } from '../../scripts/stack/servers.js';
import { startPgBouncer } from '../../scripts/stack/pgbouncer.js';
import { startRedis } from '../../scripts/stack/redis.js';

const PASSWORD = 'tuning-test-password';
let dir: string;

const psql = (url: string, sql: string) => runServerProgram('psql', [url, '-Atqc', sql], { timeoutMs: 20_000 }).trim();
const redisCli = (port: number, ...args: string[]) => runServerProgram('redis-cli', ['-h', LOOPBACK, '-p', String(port), '--no-auth-warning', ...args], { timeoutMs: 10_000 }).trim();

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-tuning-'));
  // Postgres and PgBouncer run as the postgres user when we are root: it must reach its folders.
  fs.chmodSync(dir, 0o755);
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('Postgres and PgBouncer', () => {
  let pg: PostgresHandle | undefined;
  afterAll(async () => pg?.stop());

  it.each(['minimal', 'standard', 'premium'] as const)('Postgres starts with %s\'s postgresql.conf and runs every line of it', async (name) => {
    await pg?.stop();
    // The chart's file; the local harness adds only listen_addresses, port and the socket dir.
    const rendered = configMapFile(name, 'postgresql.conf');
    pg = await startPostgres({ dir: path.join(dir, 'pg'), port: await freePort(), password: PASSWORD, conf: rendered });
    const show = (k: string) => psql(pg!.url, `SHOW ${k}`);
    const p = presets[name];
    expect(show('max_connections')).toBe(String(p.postgres.maxConnections));
    let checked = 0;
    for (const [key, value] of confMap(rendered, '=')) {
      if (key === 'listen_addresses' || key === 'port') continue;
      expect(pgValue(show(key)), key).toBe(pgValue(key === 'wal_compression' && value === 'on' ? 'pglz' : value));
      checked++;
    }
    expect(checked).toBeGreaterThan(20);
    expect(show('password_encryption')).toBe('scram-sha-256');
  }, 120_000);

  it('PgBouncer runs the rendered pgbouncer.ini in transaction mode and passes queries through', async () => {
    const bouncer = await startPgBouncer({ dir: path.join(dir, 'pgbouncer'), port: await freePort(), dbPort: pg!.port, password: PASSWORD, preset: 'premium' });
    try {
      expect(psql(bouncer.url, 'SELECT 40 + 2')).toBe('42');
      // The service's statement_timeout reaches the server connections even though PgBouncer
      // drops it as a startup parameter (regression: PgBouncer refused every service connection).
      expect(runServerProgram('psql', [bouncer.url, '-Atqc', 'SHOW statement_timeout'], { env: { ...process.env, PGOPTIONS: '-c statement_timeout=5000' } }).trim()).toBe('1min');
      const admin = bouncer.url.replace(/\/wa_router$/, '/pgbouncer');
      const config = runServerProgram('psql', [admin, '-Atqc', 'SHOW CONFIG'], { timeoutMs: 20_000 });
      const setting = (k: string) => config.split('\n').find((l) => l.startsWith(`${k}|`))?.split('|')[1];
      expect(setting('pool_mode')).toBe('transaction');
      expect(setting('max_client_conn')).toBe('500');
      expect(setting('default_pool_size')).toBe('50');
      expect(setting('reserve_pool_size')).toBe('25');
      expect(setting('max_db_connections')).toBe('100');
      // The chart's DATABASE_PREPARED_STATEMENTS=true needs it above 0.
      expect(setting('max_prepared_statements')).toBe('200');
    } finally {
      await bouncer.stop();
    }
  }, 60_000);
});

/** A file of the chart's ConfigMaps, byte for byte what the cluster mounts. */
function configMapFile(preset: 'minimal' | 'standard' | 'premium', key: string): string {
  const cm = synthManifests(preset).find((m) => m.kind === 'ConfigMap' && (m as Json).data?.[key] !== undefined);
  if (!cm) throw new Error(`no ConfigMap holds ${key}`);
  return (cm as Json).data[key] as string;
}

/** A postgresql.conf value as Postgres compares it: quotes off, memory in kB, time in ms (Postgres 15+ shows wal_compression = on as the method it picked). */
function pgValue(v: string): string {
  const t = v.replace(/^'(.*)'$/, '$1');
  const m = /^(\d+(?:\.\d+)?)\s*(kB|MB|GB|TB|ms|s|min|h|d)$/.exec(t);
  if (!m) return t;
  const unit = { kB: 1, MB: 1024, GB: 1024 ** 2, TB: 1024 ** 3, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'kB'];
  return `${Number(m[1]) * unit}${/B$/.test(m[2]!) ? 'kB' : 'ms'}`;
}

/** Bytes of a redis.conf memory value (`4gb`, `256mb`, `1073741824`): Redis's 1k = 1024. */
function redisBytes(v: string): string {
  const m = /^(\d+)(kb|mb|gb)?$/i.exec(v);
  if (!m) return v;
  const unit = { kb: 2 ** 10, mb: 2 ** 20, gb: 2 ** 30 }[(m[2] ?? '').toLowerCase() as 'kb' | 'mb' | 'gb'] ?? 1;
  return String(Number(m[1]) * unit);
}

/**
 * Writes the pod's copy of a rendered file: the lines its start script appends (from the Secret),
 * and the one line a test on this host cannot keep: `dir` (Redis enters it while reading the file,
 * before any command-line option, and /data is not ours). Nothing else changes.
 */
function podCopy(rendered: string, workDir: string, appended: string): string {
  const lines = rendered.split('\n');
  const at = lines.findIndex((l) => l.startsWith('dir '));
  expect(at).toBeGreaterThanOrEqual(0);
  lines[at] = `dir ${workDir}`;
  return `${lines.join('\n')}${appended}`;
}

/** Starts a Redis server process on `file`, with a free loopback port as the only overrides. */
async function serveFile(cmd: 'redis-server' | 'redis-sentinel', file: string, port: number, workDir: string): Promise<() => Promise<void>> {
  const logFile = path.join(workDir, `${cmd}.log`);
  const server = serverCommand(cmd, [file, '--port', String(port), '--bind', LOOPBACK]);
  const proc = spawnDaemon(server.file, server.args, { logFile });
  await waitFor(cmd, () => portOpen(port), { pid: proc.pid, logFile, timeoutMs: 30_000 });
  return () => stopPid(proc.pid, 10_000, 'SIGTERM');
}

describe('Redis and Sentinel run the chart\'s own files', () => {
  const overridden = new Set(['port', 'bind', 'dir']);

  it.each(['minimal', 'premium'] as const)('Redis runs %s\'s redis.conf as rendered: every line is what CONFIG GET reports', async (name) => {
    const work = path.join(dir, `redis-${name}`);
    fs.mkdirSync(work, { recursive: true });
    const rendered = configMapFile(name, 'redis.conf');
    // What the pod's start script adds to its copy, from the Secret.
    const file = path.join(work, 'redis.conf');
    fs.writeFileSync(file, podCopy(rendered, work, `requirepass ${PASSWORD}\nmasterauth ${PASSWORD}\n`));
    const port = await freePort();
    const stop = await serveFile('redis-server', file, port, work);
    try {
      const get = (k: string) => redisCli(port, '-a', PASSWORD, 'CONFIG', 'GET', k).split('\n')[1] ?? '';
      // The invariants the queue relies on, now from the rendered file alone.
      expect(get('maxmemory-policy')).toBe('noeviction');
      expect(get('appendonly')).toBe('yes');
      expect(get('appendfsync')).toBe('everysec');
      expect(get('maxmemory')).toBe(redisBytes(presets[name].redis.maxmemory));
      let checked = 0;
      for (const line of rendered.split('\n')) {
        const t = line.trim();
        if (!t || t.startsWith('#')) continue;
        const [key, ...rest] = t.split(/\s+/);
        if (overridden.has(key!)) continue;
        const value = rest.join(' ');
        if (key === 'client-output-buffer-limit') {
          // One setting per class, reported together; Redis still names replicas `slave`.
          const [cls, ...limits] = rest;
          expect(get(key), line).toContain(`${cls === 'replica' ? 'slave' : cls} ${limits.map(redisBytes).join(' ')}`);
        } else {
          expect(get(key!), line).toBe(key === 'maxmemory' || key === 'repl-backlog-size' ? redisBytes(value) : value);
        }
        checked++;
      }
      expect(checked).toBeGreaterThan(15);
    } finally {
      await stop();
    }
  }, 60_000);

  it('a Sentinel runs the chart\'s sentinel.conf: quorum, down-after and failover timeout as rendered', async () => {
    const work = path.join(dir, 'sentinel');
    fs.mkdirSync(work, { recursive: true });
    const masterFile = path.join(work, 'redis.conf');
    fs.writeFileSync(masterFile, podCopy(configMapFile('standard', 'redis.conf'), work, `requirepass ${PASSWORD}\nmasterauth ${PASSWORD}\n`));
    const masterPort = await freePort();
    const stopMaster = await serveFile('redis-server', masterFile, masterPort, work);
    const rendered = configMapFile('standard', 'sentinel.conf');
    const monitor = /^sentinel monitor (\S+) __MASTER_HOST__ (\d+) (\d+)$/m.exec(rendered);
    expect(monitor).not.toBeNull();
    const [, masterName, , quorum] = monitor!;
    // The pod's start script puts the master's address in and adds the password; the master's
    // port differs here only because this host runs it on a free port.
    const file = path.join(work, 'sentinel.conf');
    fs.writeFileSync(file, podCopy(rendered.replace(/__MASTER_HOST__ \d+/, `${LOOPBACK} ${masterPort}`), path.join(work, 'sentinel-dir'), `sentinel auth-pass ${masterName} ${PASSWORD}\n`));
    fs.mkdirSync(path.join(work, 'sentinel-dir'));
    const port = await freePort();
    const stopSentinel = await serveFile('redis-sentinel', file, port, work);
    try {
      const field = (reply: string[], k: string) => reply[reply.indexOf(k) + 1];
      const master = redisCli(port, 'SENTINEL', 'master', masterName!).split('\n');
      const setting = (k: string) => new RegExp(`^sentinel ${k} ${masterName} (\\d+)$`, 'm').exec(rendered)?.[1];
      expect(field(master, 'quorum')).toBe(quorum);
      expect(quorum).toBe(String(presets.standard.redis.sentinel.quorum));
      expect(field(master, 'down-after-milliseconds')).toBe(setting('down-after-milliseconds'));
      expect(field(master, 'down-after-milliseconds')).toBe(String(presets.standard.redis.sentinel.downAfterMs));
      expect(field(master, 'failover-timeout')).toBe(setting('failover-timeout'));
      expect(field(master, 'parallel-syncs')).toBe(setting('parallel-syncs'));
      // It reached the master with the password and sees it as a healthy master.
      await waitFor('sentinel sees the master', () => field(redisCli(port, 'SENTINEL', 'master', masterName!).split('\n'), 'flags') === 'master', { timeoutMs: 20_000 });
    } finally {
      await stopSentinel();
      await stopMaster();
    }
  }, 60_000);
  it('a master that stops hands over first: the chart\'s pre-stop asks Sentinel for a failover and returns once it is a replica (issue: 503s for down-after + failover on every Redis roll)', async () => {
    const work = path.join(dir, 'handover');
    fs.mkdirSync(work, { recursive: true });
    const [masterPort, replicaPort, sentinelPort] = [await freePort(), await freePort(), await freePort()];
    const master = await startRedis({ dir: path.join(work, 'master'), port: masterPort, password: PASSWORD });
    const replica = await startRedis({ dir: path.join(work, 'replica'), port: replicaPort, password: PASSWORD, replicaOf: { host: LOOPBACK, port: masterPort } });
    const conf = path.join(work, 'sentinel.conf');
    fs.writeFileSync(conf, [`dir ${work}`, `sentinel monitor wa-router ${LOOPBACK} ${masterPort} 1`, `sentinel auth-pass wa-router ${PASSWORD}`,
      'sentinel down-after-milliseconds wa-router 5000', 'sentinel failover-timeout wa-router 10000', ''].join('\n'));
    const stopSentinel = await serveFile('redis-sentinel', conf, sentinelPort, work);
    const role = (port: number) => redisCli(port, '-a', PASSWORD, 'ROLE').split('\n')[0];
    try {
      await waitFor('the Sentinel to know the replica', () => /flags\nslave\n/.test(redisCli(sentinelPort, 'SENTINEL', 'replicas', 'wa-router')) && /master_link_status:up/.test(redisCli(replicaPort, '-a', PASSWORD, 'INFO', 'replication')), { timeoutMs: 30_000 });
      const script = path.join(work, 'pre-stop-redis.sh');
      fs.writeFileSync(script, configMapFile('standard', 'pre-stop-redis.sh').replaceAll(`-p ${6379}`, `-h ${LOOPBACK} -p ${masterPort}`));
      const env = { PATH: process.env['PATH'] ?? '', REDIS_PASSWORD: PASSWORD, SENTINELS: `${LOOPBACK}:${sentinelPort}`, MASTER_NAME: 'wa-router' };
      // On a replica it does nothing.
      const onReplica = fs.readFileSync(script, 'utf8').replaceAll(`-p ${masterPort}`, `-p ${replicaPort}`);
      fs.writeFileSync(`${script}.replica`, onReplica);
      runServerProgram('sh', [`${script}.replica`], { env, timeoutMs: 30_000 });
      expect(role(masterPort)).toBe('master');
      const t0 = Date.now();
      runServerProgram('sh', [script], { env, timeoutMs: 40_000 });
      expect(role(masterPort)).toBe('slave');
      expect(role(replicaPort)).toBe('master');
      // Well inside the grace period, and sooner than down-after alone.
      expect(Date.now() - t0).toBeLessThan(20_000);
    } finally {
      await stopSentinel();
      await replica.stop();
      await master.stop();
    }
  }, 90_000);
  it('the hand-over and the replica\'s readiness wait for the replica\'s resync: Sentinel would promote a restarted replica that lacks what was acked meanwhile', async () => {
    const work = path.join(dir, 'handover-sync');
    fs.mkdirSync(work, { recursive: true });
    const [masterPort, replicaPort, sentinelPort] = [await freePort(), await freePort(), await freePort()];
    const master = await startRedis({ dir: path.join(work, 'master'), port: masterPort, password: PASSWORD });
    const replicaOpts = { dir: path.join(work, 'replica'), port: replicaPort, password: PASSWORD, replicaOf: { host: LOOPBACK, port: masterPort } };
    let replica = await startRedis(replicaOpts);
    const conf = path.join(work, 'sentinel.conf');
    fs.writeFileSync(conf, [`dir ${work}`, `sentinel monitor wa-router ${LOOPBACK} ${masterPort} 1`, `sentinel auth-pass wa-router ${PASSWORD}`,
      'sentinel down-after-milliseconds wa-router 5000', 'sentinel failover-timeout wa-router 10000', ''].join('\n'));
    const stopSentinel = await serveFile('redis-sentinel', conf, sentinelPort, work);
    const cli = (port: number, ...args: string[]) => redisCli(port, '-a', PASSWORD, ...args);
    const local = (text: string, port: number) => text.replaceAll(`-p ${6379}`, `-h ${LOOPBACK} -p ${port}`);
    const script = path.join(work, 'pre-stop-redis.sh');
    fs.writeFileSync(script, local(configMapFile('standard', 'pre-stop-redis.sh'), masterPort));
    const env = { PATH: process.env['PATH'] ?? '', REDIS_PASSWORD: PASSWORD, SENTINELS: `${LOOPBACK}:${sentinelPort}`, MASTER_NAME: 'wa-router' };
    const probe = (container(find(synthManifests('standard'), 'StatefulSet', 'wa-router-redis')).readinessProbe.exec.command as string[]).at(-1)!;
    const ready = (port: number) => {
      try {
        runServerProgram('sh', ['-c', local(probe, port)], { env, timeoutMs: 10_000 });
        return true;
      } catch {
        return false;
      }
    };
    try {
      await waitFor('the Sentinel to know the replica', () => /flags\nslave\n/.test(redisCli(sentinelPort, 'SENTINEL', 'replicas', 'wa-router')) && /master_link_status:up/.test(cli(replicaPort, 'INFO', 'replication')), { timeoutMs: 30_000 });
      expect(ready(masterPort)).toBe(true);
      expect(ready(replicaPort)).toBe(true);
      await replica.stop();
      cli(masterPort, 'SET', 'acked-while-the-replica-was-away', '1');
      // No replica in sync: the master stops without a hand-over rather than promote stale data.
      runServerProgram('sh', [script], { env: { ...env, HANDOVER_WAIT_SECONDS: '2' }, timeoutMs: 30_000 });
      expect(cli(masterPort, 'ROLE').split('\n')[0]).toBe('master');
      // The replica comes back on a new disk and its full resync is held back for a few seconds.
      cli(masterPort, 'CONFIG', 'SET', 'repl-diskless-sync', 'yes');
      cli(masterPort, 'CONFIG', 'SET', 'repl-diskless-sync-delay', '5');
      replica = await startRedis({ ...replicaOpts, dir: path.join(work, 'replica-new-disk') });
      await waitFor('the replica to answer', () => cli(replicaPort, 'PING') === 'PONG', { timeoutMs: 10_000 });
      expect(cli(replicaPort, 'INFO', 'replication')).toMatch(/master_link_status:down/);
      expect(ready(replicaPort)).toBe(false);
      runServerProgram('sh', [script], { env, timeoutMs: 60_000 });
      expect(cli(replicaPort, 'ROLE').split('\n')[0]).toBe('master');
      expect(cli(replicaPort, 'GET', 'acked-while-the-replica-was-away')).toBe('1');
    } finally {
      await stopSentinel();
      await replica.stop();
      await master.stop();
    }
  }, 120_000);
});
