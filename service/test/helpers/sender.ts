// The app sending through the Graph API simulator, as the outbound and agent API tests run it.
import { afterAll, beforeAll, expect } from 'vitest';
import { startGraphSimulator, type GraphSimulator, type SimulatorConfig } from '../../../scripts/graph-sim/server.js';
import type { Role } from '../../src/app.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, type TestDb } from './context.js';
import { json, startApp, type RunningApp } from './app.js';

/** The agent API's headers for a JSON body. */
export const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };

export interface SenderStack {
  readonly db: TestDb;
  readonly sim: GraphSimulator;
  readonly app: RunningApp;
}

/**
 * One fresh database, the Graph API simulator (knowing the test channel's token, its webhooks
 * going to the app) and an app sending through it, for the enclosing file or describe block (its
 * beforeAll and afterAll are registered here); read them inside tests and hooks, once started.
 */
export function senderForFile(simConfig: Partial<SimulatorConfig>, env: Record<string, string> = {}, role: Role = 'all'): SenderStack {
  const started = {} as { db: TestDb; sim: GraphSimulator; app: RunningApp };
  beforeAll(async () => {
    started.db = await createTestDb();
    started.sim = await startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, ...simConfig } });
    started.app = await startApp(started.db, role, { GRAPH_API_BASE_URL: started.sim.url, ...env });
    started.sim.configure({ webhookUrl: `${started.app.url}/webhooks/whatsapp` });
  });
  afterAll(async () => {
    await started.app?.stop();
    await started.sim?.close();
    await started.db?.drop();
  });
  return started;
}

/** Sends a text through POST /v1/messages; the message's id once the API took it (202). */
export async function sendText(appUrl: string, to: string, body: string): Promise<number> {
  const res = await fetch(`${appUrl}/v1/messages`, { method: 'POST', headers: auth, body: JSON.stringify({ to, type: 'text', text: { body } }) });
  expect(res.status).toBe(202);
  return (await json(res)).id;
}

/** The message as GET /v1/messages/:id shows it. */
export const messageOf = async (appUrl: string, id: number) => json(await fetch(`${appUrl}/v1/messages/${id}`, { headers: auth }));

/**
 * A new recipient on each call: `prefix`, the time and a counter, so no two tests (or runs) share
 * a pair's rate at the simulator.
 */
export function recipients(prefix: string): () => string {
  let n = 0;
  return () => `${prefix}${String(Date.now() % 1e6).padStart(6, '0')}${String(n++).padStart(2, '0')}`;
}
