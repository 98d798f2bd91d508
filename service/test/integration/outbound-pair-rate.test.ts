// Meta's pair rate (131056) when a send reaches Meta late, against the Graph API simulator and
// real Postgres and Redis. Meta's bucket for a pair starts and refills by when each send
// arrives, not by when the sender took its token; an interval long beside the sender's own
// waits (its polling for the earlier message, a delayed job) lets a late arrival show.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { eventually, json, startApp, type RunningApp } from '../helpers/app.js';

const BURST = 2;
const INTERVAL_MS = 1_500;

let db: TestDb;
let sim: GraphSimulator;
let app: RunningApp;
const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };

async function send(to: string, body: string): Promise<number> {
  const res = await fetch(`${app.url}/v1/messages`, { method: 'POST', headers: auth, body: JSON.stringify({ to, type: 'text', text: { body } }) });
  expect(res.status).toBe(202);
  return (await json(res)).id;
}
let n = 0;
const recipient = () => `55319${String(Date.now() % 1e6).padStart(6, '0')}${String(n++).padStart(2, '0')}`;

beforeAll(async () => {
  db = await createTestDb();
  sim = await startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 2, jitterMs: 2, statusDelayMs: 10, pairBurst: BURST, pairIntervalMs: INTERVAL_MS } });
  app = await startApp(db, 'all', { GRAPH_API_BASE_URL: sim.url, PAIR_BURST: String(BURST), PAIR_INTERVAL_MS: String(INTERVAL_MS) });
  sim.configure({ webhookUrl: `${app.url}/webhooks/whatsapp` });
});
afterAll(async () => {
  await app?.stop();
  await sim?.close();
  await db?.drop();
});

describe('pair rate', () => {
  it('counts a send delayed on its way to Meta by when it arrived: no 131056, order kept', async () => {
    const to = recipient();
    // The pair's first send reaches Meta most of an interval late (a slow network, a stalled
    // worker): Meta's bucket starts then, while the sender's started when it took the token.
    sim.configure({ transitDelays: { [to]: [INTERVAL_MS - 100] } });
    const ids: number[] = [];
    for (let i = 0; i < 4; i++) ids.push(await send(to, `part ${i}`));
    await eventually(async () => sim.sent.filter((s) => s.to === to).length === 4, { timeoutMs: 30_000, what: '4 sent' });
    expect(sim.sent.filter((s) => s.to === to).map((s) => (s.body.text as { body: string }).body)).toEqual(ids.map((_, i) => `part ${i}`));
    expect(sim.stats.errors[131056] ?? 0).toBe(0);
  });
});
