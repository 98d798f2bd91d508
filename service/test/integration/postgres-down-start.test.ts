// Postgres stopped, PgBouncer up (a Postgres pod restarting, a failover): a web process that
// starts then listens at once (its startup probe passes), reports ready (web needs only Redis),
// and acks webhooks; its start-up queries end at DB_QUERY_TIMEOUT_MS instead of PgBouncer's 120 s.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildApp, type App } from '../../src/app.js';
import { createLogger } from '../../src/log.js';
import { freePort } from '../../../scripts/stack/proc.js';
import { startPostgres, type PostgresHandle } from '../../../scripts/stack/postgres.js';
import { startPgBouncer, type PgBouncerHandle } from '../../../scripts/stack/pgbouncer.js';
import { change, envelope } from '../fixtures/payloads.js';
import { PHONE_NUMBER_ID, testConfig, type TestDb } from '../helpers/context.js';
import { eventually, postWebhook } from '../helpers/app.js';

let dir: string;
let pg: PostgresHandle;
let bouncer: PgBouncerHandle;
let app: App | undefined;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-pg-down-'));
  fs.chmodSync(dir, 0o755);
  pg = await startPostgres({ dir: path.join(dir, 'pg'), port: await freePort(), password: 'down-test', ephemeral: true });
  bouncer = await startPgBouncer({ dir: path.join(dir, 'bouncer'), port: await freePort(), dbPort: pg.port, password: 'down-test' });
  await pg.stop();
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await bouncer?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

it('a web process started while only Postgres is down listens at once, is ready and acks webhooks', async () => {
  const db = { url: bouncer.url } as TestDb;
  const config = testConfig(db, { DB_QUERY_TIMEOUT_MS: '8000' });
  app = await buildApp(config, 'web', { log: createLogger(process.env['TEST_LOG_LEVEL'] ?? 'silent') });
  const t0 = Date.now();
  const started = app.start().then(() => Date.now() - t0);
  await eventually(async () => app!.port() > 0, { timeoutMs: 10_000, what: 'the server listening' });
  const listenedMs = Date.now() - t0;
  const url = `http://127.0.0.1:${app.port()}`;
  expect((await fetch(`${url}/healthz`)).status).toBe(200);
  const ready = await fetch(`${url}/readyz`);
  const report = (await ready.json()) as { checks: { postgres: { ok: boolean } } };
  expect(ready.status).toBe(200);
  expect(report.checks.postgres.ok).toBe(false);
  const body = JSON.stringify(envelope(change({
    phoneNumberId: PHONE_NUMBER_ID,
    contacts: [{ profile: { name: 'Down' }, wa_id: '5511900000951' }],
    messages: [{ from: '5511900000951', id: 'wamid.PGDOWN-1', timestamp: '1760000000', type: 'text', text: { body: 'hi' } }],
  })));
  expect((await postWebhook(url, body)).status).toBe(200);
  // Before the start-up queries, not after them (with PgBouncer failing the login they take 5 s here).
  expect(listenedMs).toBeLessThan(2_500);
  // The start-up queries give up at the client-side timeout (8 s here), not PgBouncer's 120 s.
  expect(await started).toBeLessThan(30_000);
}, 60_000);
