// The cluster's acks (ACK_DURABILITY=replicated, ACK_REPLICA_FALLBACK=local) through a restart of
// the only Redis replica, against real servers: Meta keeps getting 200 (acked on the master's AOF
// alone, counted), not a 503 for every webhook, and WAIT takes over again once the replica is back.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { onlineReplicas } from '../../src/queue/ingest-producer.js';
import { freePort } from '../../../scripts/stack/proc.js';
import { startRedis, type RedisHandle } from '../../../scripts/stack/redis.js';
import { change, envelope } from '../fixtures/payloads.js';
import { createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { eventually, postWebhook, startApp, type RunningApp } from '../helpers/app.js';

const password = 'replica-restart';
let dir: string;
let master: RedisHandle;
let replica: RedisHandle | undefined;
let replicaPort: number;
let db: TestDb;
let app: RunningApp;

const body = (n: number) => JSON.stringify(envelope(change({
  phoneNumberId: PHONE_NUMBER_ID,
  contacts: [{ profile: { name: 'Restart' }, wa_id: '5511900000901' }],
  messages: [{ from: '5511900000901', id: `wamid.RESTART-${n}`, timestamp: '1760000000', type: 'text', text: { body: `m${n}` } }],
})));
async function localAcks(): Promise<number> {
  const line = (await (await fetch(`${app.url}/metrics`)).text()).split('\n').find((l) => l.startsWith('wa_router_ack_local_fallback_total '));
  return Number(line?.split(' ')[1] ?? NaN);
}
async function replicaOnline(want: number): Promise<void> {
  const m = new Redis(master.url);
  try {
    await eventually(async () => onlineReplicas(await m.info('replication')) === want, { timeoutMs: 20_000, what: `${want} replica online` });
  } finally {
    m.disconnect();
  }
}
const startReplica = async () => startRedis({ dir: path.join(dir, 'replica'), port: replicaPort, password, replicaOf: { host: '127.0.0.1', port: master.port } });

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-replica-restart-'));
  master = await startRedis({ dir: path.join(dir, 'master'), port: await freePort(), password });
  replicaPort = await freePort();
  replica = await startReplica();
  await replicaOnline(1);
  db = await createTestDb();
  app = await startApp(db, 'web', { REDIS_URL: master.url, ACK_DURABILITY: 'replicated', ACK_REPLICA_FALLBACK: 'local', ACK_WAIT_TIMEOUT_MS: '300' });
}, 60_000);
afterAll(async () => {
  await app?.stop();
  await replica?.stop();
  await master?.stop();
  await db?.drop();
  fs.rmSync(dir, { recursive: true, force: true });
});

it('acks with WAIT while the replica is online, on the master alone (counted) while it restarts, with WAIT again once it is back', async () => {
  expect((await postWebhook(app.url, body(0))).status).toBe(200);
  expect(await localAcks()).toBe(0);

  await replica!.stop();
  replica = undefined;
  const statuses: number[] = [];
  const slowest = { ms: 0 };
  const started = Date.now();
  for (let i = 1; i <= 40; i++) {
    const t0 = Date.now();
    statuses.push((await postWebhook(app.url, body(i))).status);
    slowest.ms = Math.max(slowest.ms, Date.now() - t0);
  }
  expect(statuses.filter((s) => s !== 200)).toEqual([]);
  // One WAIT timed out (300 ms) to learn the replica was gone; the rest skipped it (40 WAITs
  // would take 12 s, blocking the connection every write shares).
  expect(slowest.ms).toBeLessThan(2_000);
  expect(Date.now() - started).toBeLessThan(6_000);
  expect(await localAcks()).toBe(40);

  replica = await startReplica();
  await replicaOnline(1);
  // The producer looks again at most once a second: after that, acks wait for the replica again.
  await new Promise((r) => setTimeout(r, 1_200));
  expect((await postWebhook(app.url, body(41))).status).toBe(200);
  const afterBack = await localAcks();
  expect(afterBack).toBeLessThanOrEqual(41);
  for (let i = 42; i <= 46; i++) expect((await postWebhook(app.url, body(i))).status).toBe(200);
  expect(await localAcks()).toBe(afterBack);
}, 90_000);

it('reads the replicas in sync from INFO replication', () => {
  const info = 'role:master\r\nconnected_slaves:2\r\nslave0:ip=10.0.0.1,port=6379,state=online,offset=10,lag=0\r\nslave1:ip=10.0.0.2,port=6379,state=wait_bgsave,offset=0,lag=0\r\n';
  expect(onlineReplicas(info)).toBe(1);
  expect(onlineReplicas('role:master\r\nconnected_slaves:0\r\n')).toBe(0);
});

it('exports the replicas in sync apart from the connected ones: a replica still in its full resync is connected, not online', async () => {
  const m = new Redis(master.url);
  const metrics = async () => {
    const text = await (await fetch(`${app.url}/metrics`)).text();
    const value = (name: string) => Number(text.split('\n').find((l) => l.startsWith(`${name} `))?.split(' ')[1] ?? NaN);
    return { connected: value('wa_router_redis_connected_replicas'), online: value('wa_router_redis_online_replicas') };
  };
  let second: RedisHandle | undefined;
  try {
    expect(await metrics()).toEqual({ connected: 1, online: 1 });
    await m.config('SET', 'repl-diskless-sync', 'yes');
    await m.config('SET', 'repl-diskless-sync-delay', '5');
    second = await startRedis({ dir: path.join(dir, 'second'), port: await freePort(), password, replicaOf: { host: '127.0.0.1', port: master.port } });
    await eventually(async () => /connected_slaves:2/.test(await m.info('replication')), { timeoutMs: 10_000, what: 'the second replica to connect' });
    expect(await metrics()).toEqual({ connected: 2, online: 1 });
  } finally {
    await m.config('SET', 'repl-diskless-sync-delay', '0');
    await second?.stop();
    m.disconnect();
  }
}, 60_000);

it('refuses the fallback once the replica was promoted away from this master (a failover this master has not seen yet): 503, not an ack on a master about to be resynced', async () => {
  // The producer has learnt where the replica is (it reads INFO at most every 10 s while WAIT succeeds).
  await new Promise((r) => setTimeout(r, 200));
  const before = await localAcks();
  const promoted = new Redis(replica!.url);
  const old = new Redis(master.url);
  try {
    // What Sentinel's failover does to the chosen replica.
    await promoted.replicaof('NO', 'ONE');
    await eventually(async () => onlineReplicas(await old.info('replication')) === 0, { timeoutMs: 10_000, what: 'the old master to see no replica' });
    const statuses: number[] = [];
    for (let i = 101; i <= 105; i++) statuses.push((await postWebhook(app.url, body(i))).status);
    expect(statuses).toEqual([503, 503, 503, 503, 503]);
    expect(await localAcks()).toBe(before);
    const onNew = new Set(await promoted.keys('*'));
    expect((await old.keys('*')).filter((k) => !onNew.has(k) && /:\d+$/.test(k))).toEqual([]);
  } finally {
    promoted.disconnect();
    old.disconnect();
  }
}, 60_000);
