// The one place that reads process.env: parsed once at boot, frozen, every mistake named.
import { z } from 'zod';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const hostPort = z.string().regex(/^[^\s:,]+:\d{1,5}$/, 'expected host:port');

export const envSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('production'),
    /** 0 lets the kernel pick a free port (tests, several processes on one host). */
    PORT: int(0, 65535).default(3000),
    HOST: z.string().min(1).default('0.0.0.0'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

    // A regex, not z.url(): socket URLs (postgres://user@/db?host=/run/postgresql) have no host.
    DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\/\S+$/, 'expected postgres://user:pass@host:port/db'),
    /** Connections per process; PgBouncer multiplexes them (transaction mode). */
    DB_POOL_MAX: int(1, 500).default(10),

    REDIS_URL: z.url({ protocol: /^rediss?$/, error: 'expected redis://[:password@]host:port[/db]' }).optional(),
    REDIS_SENTINELS: z
      .string()
      .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))
      .pipe(z.array(hostPort).min(1))
      .optional(),
    REDIS_MASTER_NAME: z.string().min(1).default('wa-router'),
    REDIS_PASSWORD: z.string().min(1).optional(),
    REDIS_SENTINEL_PASSWORD: z.string().min(1).optional(),
    /** Prefix for every BullMQ key, so several deployments can share one Redis. */
    QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_-]+$/).default('wa'),

    WHATSAPP_APP_SECRET: z.string().min(8, 'the Meta app secret (at least 8 characters)'),
    WHATSAPP_VERIFY_TOKEN: z.string().min(1),
    WHATSAPP_PHONE_NUMBER_ID: z.string().regex(/^\d+$/, 'digits only').optional(),
    WHATSAPP_ACCESS_TOKEN: z.string().min(1).optional(),
    WHATSAPP_WABA_ID: z.string().regex(/^\d+$/, 'digits only').optional(),
    WHATSAPP_DISPLAY_PHONE_NUMBER: z.string().optional(),
    GRAPH_API_BASE_URL: z.url().default('https://graph.facebook.com'),
    GRAPH_API_VERSION: z.string().regex(/^v\d+\.\d+$/).default('v23.0'),

    API_TOKEN: z.string().min(16, 'at least 16 characters'),
    ACK_DURABILITY: z.enum(['local', 'replicated']).default('local'),
    /** Replicas that must confirm with WAIT when ACK_DURABILITY=replicated. */
    ACK_REPLICAS: int(1, 10).default(1),
    ACK_WAIT_TIMEOUT_MS: int(10, 60_000).default(500),
    /** Largest webhook body accepted; Meta's payloads stay far below. */
    WEBHOOK_MAX_BYTES: int(1024, 50 * 1024 * 1024).default(3 * 1024 * 1024),

    WORKER_CONCURRENCY: int(1, 1000).default(25),
    /** History chunks applied at once per worker process (each is a bulk transaction). */
    HISTORY_CONCURRENCY: int(1, 64).default(2),
    /**
     * How long a job stays locked to its worker without renewal; a crashed worker's
     * jobs run again after about this long.
     */
    WORKER_LOCK_MS: int(1000, 600_000).default(30_000),
    /** Attempts for an inbound job before it is dead-lettered. */
    INBOUND_ATTEMPTS: int(1, 100).default(8),
    SHUTDOWN_TIMEOUT_MS: int(1000, 120_000).default(25_000),

    /** Outbound: attempts for retryable Graph errors, exponential backoff from this base. */
    OUTBOUND_ATTEMPTS: int(1, 50).default(5),
    OUTBOUND_BACKOFF_MS: int(10, 600_000).default(3_000),
    /** Messages in flight per channel per worker process (the rate limit is shared by all). */
    OUTBOUND_CONCURRENCY: int(1, 500).default(20),
    GRAPH_TIMEOUT_MS: int(100, 120_000).default(10_000),
    /**
     * A send whose outcome is unknown (a timeout or a reset after the request was written, a
     * worker killed mid-call) is not repeated before this long after the call could have
     * ended: Meta's status webhook, which names our message, usually links it meanwhile.
     */
    OUTBOUND_UNKNOWN_OUTCOME_GRACE_MS: int(0, 3_600_000).default(60_000),
    /** Consecutive retryable failures that open a channel's circuit, and how long it stays open. */
    CIRCUIT_THRESHOLD: int(1, 1000).default(10),
    CIRCUIT_RESET_MS: int(100, 3_600_000).default(120_000),
    /** Meta's pair rate: a burst to one recipient, then one message per interval. */
    PAIR_BURST: int(1, 1000).default(45),
    PAIR_INTERVAL_MS: int(1, 600_000).default(6_000),
  })
  .superRefine((env, ctx) => {
    if (!env.REDIS_URL && !env.REDIS_SENTINELS) {
      ctx.addIssue({ code: 'custom', path: ['REDIS_URL'], message: 'set REDIS_URL, or REDIS_SENTINELS with REDIS_MASTER_NAME' });
    }
    if (env.REDIS_URL && env.REDIS_SENTINELS) {
      ctx.addIssue({ code: 'custom', path: ['REDIS_SENTINELS'], message: 'set either REDIS_URL or REDIS_SENTINELS, not both' });
    }
    if (env.WHATSAPP_PHONE_NUMBER_ID && !env.WHATSAPP_ACCESS_TOKEN) {
      ctx.addIssue({ code: 'custom', path: ['WHATSAPP_ACCESS_TOKEN'], message: 'required with WHATSAPP_PHONE_NUMBER_ID (the bootstrap channel)' });
    }
  });

export type Config = Readonly<z.output<typeof envSchema>>;

export class ConfigError extends Error {
  constructor(readonly problems: readonly { variable: string; message: string }[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p.variable}: ${p.message}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment; throws a ConfigError naming every wrong variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings mean "unset" (docker/k8s often pass VAR= for optional values).
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => ({ variable: String(i.path[0] ?? '(environment)'), message: i.message })),
    );
  }
  return Object.freeze(parsed.data);
}
