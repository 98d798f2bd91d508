export { renderPostgresConf, postgresSettings, derivePostgresSettings, type PostgresConfOptions, type Machine } from './postgres.js';
export { renderPgBouncerIni, type PgBouncerIniOptions } from './pgbouncer.js';
export { renderRedisConf, type RedisConfOptions } from './redis.js';
export { renderSentinelConf, type SentinelConfOptions } from './sentinel.js';
