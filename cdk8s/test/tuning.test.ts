// The tuning functions: premium renders the documents' values; the rest is derived PGTune-style.
import { describe, expect, it } from 'vitest';
import { derivePostgresSettings, presets, renderPgBouncerIni, renderPostgresConf, renderRedisConf, renderSentinelConf } from '../src/index.js';
import { GiB } from '../src/quantity.js';
import { confMap } from './helpers.js';

describe('postgresql.conf', () => {
  it('premium: exactly the documents\' settings', () => {
    const conf = confMap(renderPostgresConf(presets.premium), '=');
    expect(Object.fromEntries([...conf].filter(([k]) => k in presets.premium.postgres.settings || k === 'max_connections'))).toEqual({
      shared_buffers: '2GB', effective_cache_size: '6GB', maintenance_work_mem: '512MB', work_mem: '16MB', wal_buffers: '32MB',
      min_wal_size: '2GB', max_wal_size: '8GB', wal_compression: 'on', checkpoint_timeout: '15min', checkpoint_completion_target: '0.9',
      random_page_cost: '1.1', effective_io_concurrency: '200',
      autovacuum_max_workers: '4', autovacuum_naptime: '10s', autovacuum_vacuum_scale_factor: '0.05', autovacuum_analyze_scale_factor: '0.05',
      max_worker_processes: '8', max_parallel_workers: '8', max_parallel_workers_per_gather: '4', wal_level: 'replica',
      log_min_duration_statement: '1s', max_connections: '250',
    });
  });

  it('what a preset does not pin is derived from its limits: RAM/4, 3/4 RAM, RAM/16 capped at 2 GB', () => {
    const conf = confMap(renderPostgresConf(presets.minimal), '=');
    // minimal's Postgres: 1 CPU, 2 GiB.
    expect(conf.get('shared_buffers')).toBe('512MB');
    expect(conf.get('effective_cache_size')).toBe('1536MB');
    expect(conf.get('maintenance_work_mem')).toBe('128MB');
    expect(conf.get('max_connections')).toBe('100');
    expect(derivePostgresSettings(64 * GiB, 16, 200)['maintenance_work_mem']).toBe('2GB');
    expect(derivePostgresSettings(64 * GiB, 16, 200)['max_parallel_workers_per_gather']).toBe(4);
    expect(Number.parseInt(String(derivePostgresSettings(8 * GiB, 4, 200)['work_mem']))).toBeGreaterThan(0);
  });

  it('scaled to another machine, memory settings follow it; the rest stays pinned', () => {
    const conf = confMap(renderPostgresConf(presets.premium, { scaleTo: { cpuCores: 2, memoryGiB: 4 }, port: 5999, listenAddresses: '127.0.0.1' }), '=');
    expect(conf.get('shared_buffers')).toBe('1GB');
    expect(conf.get('effective_cache_size')).toBe('3GB');
    expect(conf.get('wal_compression')).toBe('on');
    expect(conf.get('port')).toBe('5999');
    expect(conf.get('listen_addresses')).toBe("'127.0.0.1'");
  });

  it('every preset (and the local stack, scaled) wakes autovacuum every 10 s, not the default minute: the outbox vacuum starts soon after its threshold', () => {
    for (const preset of Object.values(presets)) expect(confMap(renderPostgresConf(preset), '=').get('autovacuum_naptime'), preset.name).toBe('10s');
    expect(confMap(renderPostgresConf(presets.standard, { scaleTo: { cpuCores: 2, memoryGiB: 4 } }), '=').get('autovacuum_naptime')).toBe('10s');
  });

  it('is a pure function: same input, same bytes', () => {
    expect(renderPostgresConf(presets.standard)).toBe(renderPostgresConf(presets.standard));
  });
});

describe('pgbouncer.ini', () => {
  it('premium: transaction mode with the documented pool', () => {
    const text = renderPgBouncerIni(presets.premium, { dbHost: 'pg', dbPort: 5432, authFile: '/auth/userlist.txt', listenPort: 6432 });
    expect(text).toMatch(/^\[databases\]\nwa_router = host=pg port=5432 dbname=wa_router connect_query='SET statement_timeout = 60000'$/m);
    const ini = confMap(text, '=');
    expect(ini.get('pool_mode')).toBe('transaction');
    expect(ini.get('max_client_conn')).toBe('500');
    expect(ini.get('default_pool_size')).toBe('50');
    expect(ini.get('reserve_pool_size')).toBe('25');
    expect(ini.get('max_db_connections')).toBe('100');
    expect(ini.get('server_idle_timeout')).toBe('600');
    expect(ini.get('auth_file')).toBe('/auth/userlist.txt');
  });
});

describe('redis.conf and sentinel.conf', () => {
  it('premium: 4 GB that is never evicted, AOF everysec + RDB, io-threads 4, slowlog, buffer limits', () => {
    const text = renderRedisConf(presets.premium, { port: 6380, dir: '/d', password: 'pw', replicaOf: { host: '10.0.0.1', port: 6379 } });
    const conf = confMap(text, ' ');
    expect(conf.get('maxmemory')).toBe('4gb');
    expect(conf.get('maxmemory-policy')).toBe('noeviction');
    expect(conf.get('appendonly')).toBe('yes');
    expect(conf.get('appendfsync')).toBe('everysec');
    expect(conf.get('save')).toBe('900 1 300 10 60 10000');
    expect(conf.get('io-threads')).toBe('4');
    expect(conf.get('slowlog-log-slower-than')).toBe('10000');
    expect(conf.get('requirepass')).toBe('pw');
    expect(conf.get('masterauth')).toBe('pw');
    expect(conf.get('replicaof')).toBe('10.0.0.1 6379');
    expect(text).toMatch(/^client-output-buffer-limit replica 1gb 256mb 60$/m);
  });

  it('scaled down for a laptop: maxmemory follows the machine, never an eviction policy', () => {
    const conf = confMap(renderRedisConf(presets.premium, { scaleTo: { cpuCores: 2, memoryGiB: 0.5 } }), ' ');
    expect(conf.get('maxmemory')).toBe('409mb');
    expect(conf.get('io-threads')).toBe('1');
    expect(conf.get('maxmemory-policy')).toBe('noeviction');
  });

  it('sentinel: quorum 2, the down-after and failover timeouts, auth to the master', () => {
    const text = renderSentinelConf(presets.premium, { masterHost: '127.0.0.1', masterPort: 7000, password: 'pw', downAfterMs: 1000 });
    expect(text).toMatch(/^sentinel monitor wa-router 127\.0\.0\.1 7000 2$/m);
    expect(text).toMatch(/^sentinel down-after-milliseconds wa-router 1000$/m);
    expect(text).toMatch(/^sentinel failover-timeout wa-router 60000$/m);
    expect(text).toMatch(/^sentinel auth-pass wa-router pw$/m);
    expect(text.indexOf('resolve-hostnames')).toBeLessThan(text.indexOf('sentinel monitor'));
  });
});
