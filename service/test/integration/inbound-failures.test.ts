// What the README promises when things go wrong on the inbound side, against real servers:
// jobs wait through a Postgres outage without spending attempts; one bad event is split out of
// its batch, dead-lettered with its reason and replayed; replicated acks answer 503 when no
// replica confirms within ACK_WAIT_TIMEOUT_MS.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../src/store/migrate.js';
import { sign } from '../../src/whatsapp/signature.js';
import { freePort } from '../../../scripts/stack/proc.js';
import { startPostgres, type PostgresHandle } from '../../../scripts/stack/postgres.js';
import { startRedis, type RedisHandle } from '../../../scripts/stack/redis.js';
import { envelope, historyChange, historyThread } from '../fixtures/payloads.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';

const auth = { authorization: `Bearer ${API_TOKEN}` };
const inbound = (from: string, id: string, body = 'hello') =>
  JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
      messaging_product: 'whatsapp', metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID },
      contacts: [{ profile: { name: 'Failure' }, wa_id: from }],
      messages: [{ from, id, timestamp: '1760000000', type: 'text', text: { body } }],
    } }] }],
  });
async function metric(url: string, name: string): Promise<number> {
  const line = (await (await fetch(`${url}/metrics`)).text()).split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}
/** POSTs signed bodies on connections opened beforehand, all written in one go; the statuses. */
async function postTogether(baseUrl: string, bodies: string[]): Promise<number[]> {
  const { port } = new URL(baseUrl);
  const sockets = await Promise.all(bodies.map(() => new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(Number(port), '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  })));
  // Let the server accept every connection first: it reads them all in the same loop turn then.
  await new Promise((r) => setTimeout(r, 200));
  const answers = sockets.map((s) => new Promise<number>((resolve) => {
    let head = '';
    s.on('data', (d: Buffer) => {
      head += d.toString();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      if (m) {
        resolve(Number(m[1]));
        s.destroy();
      }
    });
  }));
  bodies.forEach((body, i) => sockets[i]!.write(`POST /webhooks/whatsapp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nx-hub-signature-256: ${sign(body, APP_SECRET)}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`));
  return Promise.all(answers);
}
const deadLetters = async (url: string, queue: string) => json(await fetch(`${url}/v1/dead-letters?queue=${queue}`, { headers: auth })) as Promise<{ total: number; items: { id: string; reason: string; data: { events: { body: string }[] } }[] }>;

describe('a Postgres outage', () => {
  let dir: string;
  let postgres: PostgresHandle;
  let port: number;
  let app: RunningApp;
  let pool: pg.Pool;
  const password = 'outage-wait';
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-pg-wait-'));
    fs.chmodSync(dir, 0o755);
    port = await freePort();
    postgres = await startPostgres({ dir: path.join(dir, 'pg'), port, password, ephemeral: true });
    pool = new pg.Pool({ connectionString: postgres.url, max: 2 });
    // Its idle connections die with the server we stop on purpose.
    pool.on('error', () => undefined);
    await migrate(pool);
    // The test context only needs a database URL; this one is ours to stop.
    app = await startApp({ url: postgres.url, pool, drop: async () => undefined }, 'all', { INBOUND_ATTEMPTS: '2' });
  }, 120_000);
  afterAll(async () => {
    await app?.stop();
    await pool?.end();
    await postgres?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('live and history jobs wait it out without spending attempts, then store everything', async () => {
    await eventually(async () => (await pool.query('SELECT 1 FROM channels WHERE phone_number_id = $1', [PHONE_NUMBER_ID])).rowCount === 1, { what: 'bootstrap channel' });
    await postgres.stop();
    const live = ['wamid.PGWAIT-1', 'wamid.PGWAIT-2', 'wamid.PGWAIT-3'];
    for (const id of live) expect((await postWebhook(app.url, inbound('5511900000601', id))).status).toBe(200);
    const history = JSON.stringify(envelope(historyChange({ phase: 0, chunkOrder: 1, progress: 100, threads: [historyThread({ waId: '5511900000602', count: 4 })] })));
    expect((await postWebhook(app.url, history)).status).toBe(200);
    // Far more tries than INBOUND_ATTEMPTS (2) while the database is away: each one a delay.
    await eventually(async () => (await metric(app.url, 'wa_router_transient_delays_total')) >= 8, { timeoutMs: 30_000, what: 'jobs delayed repeatedly' });
    expect((await deadLetters(app.url, 'inbound')).total).toBe(0);
    expect((await deadLetters(app.url, 'history')).total).toBe(0);

    postgres = await startPostgres({ dir: path.join(dir, 'pg'), port, password, ephemeral: true });
    await eventually(async () => Number((await pool.query("SELECT count(*) AS n FROM messages WHERE wamid LIKE 'wamid.PGWAIT-%'")).rows[0].n) === 3, { timeoutMs: 30_000, what: 'live messages stored' });
    await eventually(async () => (await pool.query("SELECT 1 FROM sync_runs WHERE status = 'completed' AND messages_stored = 4")).rowCount === 1, { timeoutMs: 30_000, what: 'history chunk applied' });
    expect((await pool.query("SELECT c.unread_count FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE k.wa_id = '5511900000601'")).rows[0]).toEqual({ unread_count: 3 });
    expect((await deadLetters(app.url, 'inbound')).total).toBe(0);
    expect((await deadLetters(app.url, 'history')).total).toBe(0);
  }, 120_000);
});

describe('one bad event in a batch', () => {
  let db: TestDb;
  let app: RunningApp;
  beforeAll(async () => {
    db = await createTestDb();
    app = await startApp(db, 'all', { INBOUND_ATTEMPTS: '2' });
  });
  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('is split out, dead-lettered with its reason, and stored by a replay; the rest of its batch is stored at once', async () => {
    // A fault in Postgres itself: this one message cannot be written, whatever the worker does.
    await db.pool.query(`CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused %', NEW.wamid; END $$;
      CREATE TRIGGER poison BEFORE INSERT ON messages FOR EACH ROW WHEN (NEW.wamid = 'wamid.SPLIT-POISON') EXECUTE FUNCTION refuse_poison()`);
    const ids = ['wamid.SPLIT-1', 'wamid.SPLIT-2', 'wamid.SPLIT-POISON', 'wamid.SPLIT-3', 'wamid.SPLIT-4', 'wamid.SPLIT-5'];
    // Written at the same instant on open connections, so the web process takes them in one
    // event-loop tick: one job holds all six (what a burst from Meta looks like).
    expect(await postTogether(app.url, ids.map((id) => inbound('5511900000701', id)))).toEqual(ids.map(() => 200));
    const stored = async () => (await db.pool.query<{ wamid: string }>("SELECT wamid FROM messages WHERE wamid LIKE 'wamid.SPLIT-%' ORDER BY wamid")).rows.map((r) => r.wamid);
    await eventually(async () => (await stored()).length === 5, { what: 'the five good messages' });
    expect(await stored()).toEqual(ids.filter((i) => !i.includes('POISON')).sort());

    await eventually(async () => (await metric(app.url, 'wa_router_isolated_events_total')) === 1, { what: 'one event isolated' });
    const dead = await eventually(async () => {
      const d = await deadLetters(app.url, 'inbound');
      return d.total === 1 ? d : null;
    }, { timeoutMs: 30_000, what: 'the bad event dead-lettered' });
    expect(dead.items[0]!.reason).toContain('refused wamid.SPLIT-POISON');
    // Dead-lettered alone: the job holds that event only, not its batch.
    expect(dead.items[0]!.data.events).toHaveLength(1);
    expect(dead.items[0]!.data.events[0]!.body).toContain('wamid.SPLIT-POISON');

    await db.pool.query('DROP TRIGGER poison ON messages');
    const replay = await fetch(`${app.url}/v1/dead-letters/${encodeURIComponent(dead.items[0]!.id)}/replay`, { method: 'POST', headers: auth });
    expect(replay.status).toBe(202);
    await eventually(async () => (await stored()).length === 6, { what: 'the replayed message' });
    expect((await deadLetters(app.url, 'inbound')).total).toBe(0);
    expect((await db.pool.query("SELECT c.unread_count FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE k.wa_id = '5511900000701'")).rows[0]).toEqual({ unread_count: 6 });
  }, 60_000);
});

describe('ACK_DURABILITY=replicated', () => {
  let dir: string;
  let master: RedisHandle;
  let replica: RedisHandle | undefined;
  let db: TestDb;
  let app: RunningApp;
  const password = 'replicated-acks';
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-redis-wait-'));
    master = await startRedis({ dir: path.join(dir, 'master'), port: await freePort(), password });
    db = await createTestDb();
    app = await startApp(db, 'web', { REDIS_URL: master.url, ACK_DURABILITY: 'replicated', ACK_WAIT_TIMEOUT_MS: '300' });
  }, 60_000);
  afterAll(async () => {
    await app?.stop();
    await replica?.stop();
    await master?.stop();
    await db?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers 503 when no replica confirms within the timeout, and 200 once one does', async () => {
    const t0 = Date.now();
    const refused = await postWebhook(app.url, inbound('5511900000801', 'wamid.WAIT-1'));
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body).error.code).toBe('unavailable');
    expect(Date.now() - t0).toBeLessThan(5_000);

    replica = await startRedis({ dir: path.join(dir, 'replica'), port: await freePort(), password, replicaOf: { host: '127.0.0.1', port: master.port } });
    const m = new Redis(master.url);
    try {
      await eventually(async () => /connected_slaves:1/.test(await m.info('replication')) && /state=online/.test(await m.info('replication')), { timeoutMs: 20_000, what: 'replica online' });
    } finally {
      m.disconnect();
    }
    // Meta's redelivery: with the replica online a WAIT confirms within the 300 ms timeout, though
    // on a loaded machine the first try can still miss it (seen once in the full suite).
    const accepted = await eventually(async () => (await postWebhook(app.url, inbound('5511900000801', 'wamid.WAIT-1'))).status === 200, { timeoutMs: 10_000, intervalMs: 200, what: 'the redelivery acked' });
    expect(accepted).toBe(true);
  }, 60_000);
});
