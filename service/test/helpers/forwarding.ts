// For the tests that drive the forwarding worker directly: a database, a Redis client and an
// HTTP receiver that live for the test file (the call registers its hooks), areas whose webhook
// is that receiver, and forwarders with their own HTTP client and a circuit breaker that never
// opens unless a test asks (threshold 1000).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import client from 'prom-client';
import { afterAll, beforeAll, inject } from 'vitest';
import { createLogger } from '../../src/log.js';
import { AreaCircuits } from '../../src/router/forwarding/circuit.js';
import { Forwarder, type ForwarderOptions } from '../../src/router/forwarding/forwarder.js';
import { WebhookClient } from '../../src/router/forwarding/http-client.js';
import { createRouterMetrics, type RouterMetrics } from '../../src/router/metrics.js';
import { createTestDb, uniquePrefix, type TestDb } from './context.js';

/** What a test sets; the pool (the test database's unless given) and the rest come from the kit. */
export type ForwarderSettings = Omit<ForwarderOptions, 'pool' | 'log' | 'metrics' | 'client' | 'circuits'> & Partial<Pick<ForwarderOptions, 'pool'>>;

export interface ForwardingWorker {
  readonly forwarder: Forwarder;
  readonly metrics: RouterMetrics;
  /** Stops the forwarder and closes its HTTP client. */
  stop(): Promise<void>;
}

export interface ForwardingKit {
  readonly db: TestDb;
  readonly redis: Redis;
  /** An area whose webhook is the receiver; returns its id. */
  area(name: string): Promise<number>;
  /** A forwarder, not started; workers given the same `circuitPrefix` share their circuits. */
  worker(settings: ForwarderSettings, circuitPrefix?: string): ForwardingWorker;
}

/** `onRequest` gets each request's `data` (the JSON body's) and answers it. */
export function forwardingKit(onRequest: (data: Record<string, unknown>, res: http.ServerResponse) => void): ForwardingKit {
  let db: TestDb;
  let redis: Redis;
  let server: http.Server;
  beforeAll(async () => {
    db = await createTestDb();
    redis = new Redis(inject('redisUrl'));
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => onRequest((JSON.parse(Buffer.concat(chunks).toString()) as { data: Record<string, unknown> }).data, res));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    redis?.disconnect();
    await db?.drop();
  });
  return {
    get db() {
      return db;
    },
    get redis() {
      return redis;
    },
    async area(name) {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      const { rows } = await db.pool.query<{ id: string }>('INSERT INTO areas (name, webhook_url) VALUES ($1, $2) RETURNING id', [name, url]);
      return Number(rows[0]!.id);
    },
    worker(settings, circuitPrefix = uniquePrefix()) {
      const webhooks = new WebhookClient({ timeoutMs: 5_000, allowPrivate: true });
      const metrics = createRouterMetrics(new client.Registry());
      const forwarder = new Forwarder({
        pool: db.pool, log: createLogger('silent'), metrics, client: webhooks,
        circuits: new AreaCircuits(redis, { prefix: circuitPrefix, threshold: 1000, resetMs: 1000 }),
        ...settings,
      });
      return {
        forwarder,
        metrics,
        async stop() {
          await forwarder.stop();
          await webhooks.close();
        },
      };
    },
  };
}
