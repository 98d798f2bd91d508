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
    /**
     * Client-side bound on one query, waiting in PgBouncer's queue included (PgBouncer holds a
     * query up to its query_wait_timeout, 120 s, while Postgres is away). Above the server's
     * 60 s statement_timeout, so it only cuts what the server could not.
     */
    DB_QUERY_TIMEOUT_MS: int(1_000, 600_000).default(65_000),
    /**
     * `true` runs the hottest reads (the inbox pages, the token check) as named prepared statements,
     * planned once per connection. Needs a direct connection or PgBouncer 1.21+ with
     * `max_prepared_statements` > 0; PgBouncer without it fails them ("prepared statement does not exist").
     */
    DATABASE_PREPARED_STATEMENTS: z.enum(['true', 'false']).default('false').transform((v) => v === 'true'),

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
    /**
     * `replicated` with fewer than ACK_REPLICAS replicas online (one restarting or resyncing, or
     * not back yet after a failover): `none` answers 503 (Meta retries), `local` acks on the
     * master's AOF alone and counts it in wa_router_ack_local_fallback_total.
     */
    ACK_REPLICA_FALLBACK: z.enum(['none', 'local']).default('none'),
    /** Largest webhook body accepted; Meta's payloads stay far below. */
    WEBHOOK_MAX_BYTES: int(1024, 50 * 1024 * 1024).default(3 * 1024 * 1024),
    /**
     * A webhook whose enqueue Redis has not confirmed by then answers 503 (Meta retries). Meta
     * publishes no exact webhook timeout; 2 s stays under the shortest budget commonly cited for it
     * (3 s) with room for the network, and far above a healthy enqueue (milliseconds, or
     * ACK_WAIT_TIMEOUT_MS at most in replicated mode).
     */
    ENQUEUE_TIMEOUT_MS: int(100, 30_000).default(2_000),
    /** Bytes of webhook bodies allowed to wait for Redis at once; past it, 503 at once. */
    INGEST_MAX_PENDING_BYTES: int(1024, 2 ** 31 - 1).default(32 * 1024 * 1024),

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

    /** Lets areas' webhook URLs point at private or loopback addresses (local stacks, tests). */
    FORWARD_ALLOW_PRIVATE: z.enum(['true', 'false']).default('false').transform((v) => v === 'true'),
    /** Seconds between forwarding attempts (Svix's schedule); its length is the number of retries. */
    FORWARD_RETRY_SCHEDULE: z
      .string()
      .default('5,300,1800,7200,18000,36000,36000')
      .transform((s) => s.split(',').map((x) => Number(x.trim())))
      .pipe(z.array(z.number().nonnegative().max(7 * 86_400)).min(1)),
    /** How long a receiver may take to answer one delivery. */
    FORWARD_TIMEOUT_MS: int(100, 120_000).default(15_000),
    /** Deliveries in flight per worker process. */
    FORWARD_CONCURRENCY: int(1, 2_000).default(200),
    /** Whether this worker process delivers queued events to areas; `false` leaves delivery to the worker processes that do. */
    FORWARD_DELIVERY: z.enum(['true', 'false']).default('true').transform((v) => v === 'true'),
    /** The safety-net poll of an idle forwarding worker; stored events and API changes wake it at once. */
    FORWARD_POLL_MS: int(5, 60_000).default(500),
    /** A stored event waits this long for earlier messages of its conversation stored a moment later. */
    FORWARD_ORDER_SETTLE_MS: int(0, 10_000).default(30),
    /** How long at most a stored event waits for the write transactions open when it was stored to end; 0 does not wait. */
    FORWARD_ORDER_MAX_WAIT_MS: int(0, 600_000).default(10_000),
    /** Consecutive failures that open an area's circuit, and how long it stays open. */
    FORWARD_CIRCUIT_THRESHOLD: int(1, 1000).default(5),
    FORWARD_CIRCUIT_RESET_MS: int(100, 3_600_000).default(30_000),
    /** How long the previous secret still signs after a rotation. */
    SECRET_ROTATION_GRACE_SECONDS: int(0, 30 * 86_400).default(86_400),
    /** Anti-loop: automated messages per conversation within the window, then quiet. */
    ROUTER_LOOP_LIMIT: int(1, 1000).default(5),
    ROUTER_LOOP_WINDOW_SECONDS: int(1, 86_400).default(30),
    /** Requests a minute per IP that fail authentication on /v1 and /admin, and unsigned or badly signed webhook POSTs per IP; 0 turns it off. */
    RATE_LIMIT_PER_MINUTE: int(0, 1_000_000).default(100),
    /** Event streams' heartbeat, and how often their tokens are re-checked for a revocation or expiry the process was not told of. */
    EVENTS_HEARTBEAT_MS: int(100, 300_000).default(15_000),
    /** Authenticated requests a minute per token on /v1 and /admin; 0 (default) does not limit them. */
    RATE_LIMIT_PER_TOKEN_PER_MINUTE: int(0, 10_000_000).default(0),

    /** Where inbound media are kept: a local folder, or an S3-compatible bucket. */
    MEDIA_STORE: z.enum(['fs', 's3']).default('fs'),
    /** The folder of MEDIA_STORE=fs (relative paths from the working directory). */
    MEDIA_FS_DIR: z.string().min(1).default('.data/media'),
    S3_BUCKET: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name').optional(),
    /** An S3-compatible server (MinIO, SeaweedFS, R2, ...); unset means AWS S3 of S3_REGION. */
    S3_ENDPOINT: z.url().optional(),
    S3_REGION: z.string().min(1).default('us-east-1'),
    S3_ACCESS_KEY_ID: z.string().min(1).optional(),
    S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
    /** Bucket in the path (`endpoint/bucket/key`), as most self-hosted S3 servers need. */
    S3_FORCE_PATH_STYLE: z.enum(['true', 'false']).default('false').transform((v) => v === 'true'),
    /** Downloads in flight per worker process: waiting on Meta and the store, not on CPU (more in flight share each statement). */
    MEDIA_CONCURRENCY: int(1, 500).default(16),
    /** History media downloads of one channel at once per worker process, so one channel's backlog leaves slots to the others (live media are not capped). */
    MEDIA_CHANNEL_CONCURRENCY: int(1, 500).default(8),
    /** Attempts of one download (each fetches a fresh URL), exponential backoff from MEDIA_BACKOFF_MS. */
    MEDIA_ATTEMPTS: int(1, 100).default(10),
    MEDIA_BACKOFF_MS: int(10, 600_000).default(2_000),
    /** How often the worker looks for media to download (new messages, history placeholders that got their id). */
    MEDIA_POLL_MS: int(5, 60_000).default(200),
    /** Bound on one media download without progress (Graph metadata and bytes). */
    MEDIA_TIMEOUT_MS: int(100, 600_000).default(30_000),
    /** Lifetime of `media.url` links and of the presigned URLs GET /v1/media redirects to. */
    MEDIA_URL_TTL_SECONDS: int(1, 7 * 86_400).default(3_600),
    /** Key of `media.url` signatures; defaults to one derived from API_TOKEN. */
    MEDIA_URL_SECRET: z.string().min(16, 'at least 16 characters').optional(),
    /** The public origin of this service, for absolute `media.url` links (else they are paths). */
    PUBLIC_URL: z.url().optional(),
    /** With MEDIA_STORE=s3, GET /v1/media redirects to a presigned URL instead of streaming through. */
    MEDIA_S3_REDIRECT: z.enum(['true', 'false']).default('true').transform((v) => v === 'true'),
  })
  .superRefine((env, ctx) => {
    if (!env.REDIS_URL && !env.REDIS_SENTINELS) {
      ctx.addIssue({ code: 'custom', path: ['REDIS_URL'], message: 'set REDIS_URL, or REDIS_SENTINELS with REDIS_MASTER_NAME' });
    }
    if (env.REDIS_URL && env.REDIS_SENTINELS) {
      ctx.addIssue({ code: 'custom', path: ['REDIS_SENTINELS'], message: 'set either REDIS_URL or REDIS_SENTINELS, not both' });
    }
    if (env.ACK_DURABILITY === 'replicated' && env.ENQUEUE_TIMEOUT_MS <= env.ACK_WAIT_TIMEOUT_MS) {
      ctx.addIssue({ code: 'custom', path: ['ENQUEUE_TIMEOUT_MS'], message: `must exceed ACK_WAIT_TIMEOUT_MS (${env.ACK_WAIT_TIMEOUT_MS}), or every replicated ack times out` });
    }
    if (env.INGEST_MAX_PENDING_BYTES < env.WEBHOOK_MAX_BYTES) {
      ctx.addIssue({ code: 'custom', path: ['INGEST_MAX_PENDING_BYTES'], message: `must be at least WEBHOOK_MAX_BYTES (${env.WEBHOOK_MAX_BYTES}), or the largest webhook is always refused` });
    }
    if (env.MEDIA_STORE === 's3') {
      if (!env.S3_BUCKET) ctx.addIssue({ code: 'custom', path: ['S3_BUCKET'], message: 'required with MEDIA_STORE=s3' });
      // Without keys the SDK's own chain applies (instance roles, web identity).
      if (!env.S3_ACCESS_KEY_ID !== !env.S3_SECRET_ACCESS_KEY) ctx.addIssue({ code: 'custom', path: ['S3_SECRET_ACCESS_KEY'], message: 'set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither' });
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
