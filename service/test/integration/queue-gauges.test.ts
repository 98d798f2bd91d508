// The gauges the alerts read, as /metrics shows them: the age of the oldest waiting inbound job
// (what WaRouterInboundBacklogOld watches), paused channels (WaRouterChannelPaused) and the Redis
// master's replicas (WaRouterRedisReplicaMissing; the test Redis has none).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { eventually, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { inboundEnvelope, textMessage } from '../fixtures/payloads.js';
import { metaJson } from '../fixtures/sign.js';

async function metric(url: string, series: string): Promise<number | undefined> {
  const line = (await (await fetch(`${url}/metrics`)).text()).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

describe('queue and Redis gauges', () => {
  let db: TestDb;
  let web: RunningApp;
  beforeAll(async () => {
    db = await createTestDb();
    // The web role only: nothing takes the jobs, so the backlog ages.
    web = await startApp(db, 'web');
  });
  afterAll(async () => {
    await web?.stop();
    await db?.drop();
  });

  it('the oldest waiting inbound job ages while no worker runs', async () => {
    expect(await metric(web.url, 'wa_router_queue_oldest_job_seconds{queue="inbound"}')).toBe(0);
    const body = metaJson(inboundEnvelope([textMessage({ from: '5511900000888' })], { phoneNumberId: PHONE_NUMBER_ID }));
    expect((await postWebhook(web.url, body)).status).toBe(200);
    const age = await eventually(async () => {
      const v = await metric(web.url, 'wa_router_queue_oldest_job_seconds{queue="inbound"}');
      return v !== undefined && v >= 1.5 ? v : null;
    }, { timeoutMs: 10_000, what: 'the inbound job to be 1.5 s old' });
    expect(age).toBeLessThan(30);
    expect(await metric(web.url, 'wa_router_queue_jobs{queue="inbound",state="waiting"}')).toBe(1);
  });

  it('counts paused channels', async () => {
    expect(await metric(web.url, 'wa_router_channels_paused')).toBe(0);
    await db.pool.query("UPDATE channels SET paused_reason = '190: token expired' WHERE phone_number_id = $1", [PHONE_NUMBER_ID]);
    expect(await metric(web.url, 'wa_router_channels_paused')).toBe(1);
  });

  it('reports the replicas of the Redis master it writes to, and no master change', async () => {
    // Two scrapes: the second compares the master's run_id with the one the first saw.
    for (let i = 0; i < 2; i++) expect(await metric(web.url, 'wa_router_redis_connected_replicas')).toBe(0);
    expect(await metric(web.url, 'wa_router_redis_master_changes_total')).toBe(0);
  });
});
