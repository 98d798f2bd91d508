// The local stack of `make up`: paths, secrets and ports kept under .data/ so a second
// `make up` reuses them, and variables already set in the environment win.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const DATA = path.join(ROOT, '.data');
export const LOGS = path.join(DATA, 'logs');
export const PIDS = path.join(DATA, 'pids');

export interface LocalSettings {
  readonly pgPort: number;
  readonly redisPort: number;
  readonly webPort: number;
  readonly workerPort: number;
  readonly simulatorPort: number;
  /** The S3 endpoint's port of `make up MEDIA=s3`'s object store. */
  readonly s3Port: number;
  readonly pgPassword: string;
  readonly redisPassword: string;
  readonly appSecret: string;
  readonly verifyToken: string;
  readonly apiToken: string;
  readonly phoneNumberId: string;
  readonly accessToken: string;
  /** The dev credentials of `make up MEDIA=s3`'s object store. */
  readonly s3AccessKeyId: string;
  readonly s3SecretAccessKey: string;
}

const secret = (bytes = 24) => randomBytes(bytes).toString('base64url');

/** Loads .data/settings.json, creating it with fresh dev secrets the first time. */
export function localSettings(): LocalSettings {
  fs.mkdirSync(DATA, { recursive: true, mode: 0o700 });
  const file = path.join(DATA, 'settings.json');
  let saved: Partial<LocalSettings> = {};
  if (fs.existsSync(file)) saved = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<LocalSettings>;
  const s: LocalSettings = {
    pgPort: saved.pgPort ?? 55432,
    redisPort: saved.redisPort ?? 56379,
    webPort: saved.webPort ?? 3000,
    workerPort: saved.workerPort ?? 3001,
    simulatorPort: saved.simulatorPort ?? 3010,
    s3Port: saved.s3Port ?? 58300,
    pgPassword: saved.pgPassword ?? secret(),
    redisPassword: saved.redisPassword ?? secret(),
    appSecret: saved.appSecret ?? secret(),
    verifyToken: saved.verifyToken ?? secret(12),
    apiToken: saved.apiToken ?? secret(),
    phoneNumberId: saved.phoneNumberId ?? '100000000000001',
    accessToken: saved.accessToken ?? `dev-${secret(16)}`,
    s3AccessKeyId: saved.s3AccessKeyId ?? `dev${randomBytes(8).toString('hex')}`,
    s3SecretAccessKey: saved.s3SecretAccessKey ?? secret(),
  };
  fs.writeFileSync(file, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
  return s;
}

/** The service environment; anything already in process.env wins over the generated value. */
export function serviceEnv(s: LocalSettings, pgUrl: string, redisUrl: string): Record<string, string> {
  const generated: Record<string, string> = {
    NODE_ENV: 'development',
    LOG_LEVEL: 'info',
    PORT: String(s.webPort),
    HOST: '127.0.0.1',
    DATABASE_URL: pgUrl,
    REDIS_URL: redisUrl,
    WHATSAPP_APP_SECRET: s.appSecret,
    WHATSAPP_VERIFY_TOKEN: s.verifyToken,
    WHATSAPP_PHONE_NUMBER_ID: s.phoneNumberId,
    WHATSAPP_ACCESS_TOKEN: s.accessToken,
    API_TOKEN: s.apiToken,
    ACK_DURABILITY: 'local',
    // Straight to Postgres: named prepared statements hold on its connections.
    DATABASE_PREPARED_STATEMENTS: 'true',
    // Areas' webhooks on this machine (a local CRM, a test receiver) are the point of a local stack.
    FORWARD_ALLOW_PRIVATE: 'true',
  };
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(generated)) out[k] = process.env[k] ?? v;
  for (const k of ['REDIS_SENTINELS', 'REDIS_MASTER_NAME', 'REDIS_PASSWORD', 'GRAPH_API_BASE_URL', 'WORKER_CONCURRENCY', 'DB_POOL_MAX', 'WHATSAPP_WABA_ID']) {
    const v = process.env[k];
    if (v !== undefined) out[k] = v;
  }
  if (out.REDIS_SENTINELS) delete out.REDIS_URL;
  return out;
}

export function writeEnvFile(env: Record<string, string>): string {
  const file = path.join(DATA, 'env');
  const quote = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;
  fs.writeFileSync(file, Object.entries(env).map(([k, v]) => `export ${k}=${quote(v)}`).join('\n') + '\n', { mode: 0o600 });
  return file;
}
