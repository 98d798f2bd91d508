// Runs the real app in-process (web, worker or all) against the test stack.
import { buildApp, type App, type Role } from '../../src/app.js';
import { createLogger, type Logger } from '../../src/log.js';
import { sign } from '../../src/whatsapp/signature.js';
import { afterAll, beforeAll } from 'vitest';
import { APP_SECRET, createTestDb, testConfig, type TestDb } from './context.js';

export interface RunningApp {
  readonly app: App;
  readonly url: string;
  stop(): Promise<void>;
}

export async function startApp(db: TestDb, role: Role = 'all', env: Record<string, string> = {}, opts: { log?: Logger } = {}): Promise<RunningApp> {
  const config = testConfig(db, env);
  const app = await buildApp(config, role, { log: opts.log ?? createLogger(process.env.TEST_LOG_LEVEL ?? 'silent') });
  await app.start();
  return { app, url: `http://127.0.0.1:${app.port()}`, stop: () => app.stop() };
}

/** One fresh database and one running app for the enclosing file or describe block (its beforeAll and
 * afterAll are registered here); read `db` and `app` inside tests and hooks, once they have started. */
export function appForFile(role: Role = 'all', env: Record<string, string> = {}): { readonly db: TestDb; readonly app: RunningApp } {
  const started = {} as { db: TestDb; app: RunningApp };
  beforeAll(async () => {
    started.db = await createTestDb();
    started.app = await startApp(started.db, role, env);
  });
  afterAll(async () => {
    await started.app?.stop();
    await started.db?.drop();
  });
  return started;
}

export interface PostResult {
  readonly status: number;
  readonly body: string;
}

/** POSTs a webhook body signed like Meta signs it (or with the signature given). */
export async function postWebhook(baseUrl: string, body: string | Buffer, opts: { signature?: string | null; secret?: string } = {}): Promise<PostResult> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const signature = opts.signature === undefined ? sign(body, opts.secret ?? APP_SECRET) : opts.signature;
  if (signature !== null) headers['x-hub-signature-256'] = signature;
  const res = await fetch(`${baseUrl}/webhooks/whatsapp`, { method: 'POST', headers, body });
  return { status: res.status, body: await res.text() };
}

/** Polls until fn returns a truthy value; bounded. */
export async function eventually<T>(fn: () => Promise<T | undefined | null | false>, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
  throw new Error(`timed out waiting for ${opts.what ?? 'condition'}${last ? `: ${String(last)}` : ''}`);
}

/** Response JSON for assertions; tests check shapes with expect, so a loose type is enough. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const json = (res: Response): Promise<any> => res.json();
