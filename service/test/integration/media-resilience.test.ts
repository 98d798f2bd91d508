// A media download outlives its worker: SIGKILLed mid-download, the next worker stores the file
// once and sweeps the killed one's temp file (the store's outage is in media-s3.test.ts).
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { API_TOKEN, APP_SECRET, createTestDb, PHONE_NUMBER_ID, testEnv, type TestDb } from '../helpers/context.js';
import { eventually, startApp, type RunningApp } from '../helpers/app.js';
import { spawnService, type ServiceProcess } from '../helpers/process.js';
import { bytesOf, mediaOf, receiveMedia } from '../helpers/media.js';

let db: TestDb;
let sim: GraphSimulator;
let web: RunningApp;
let env: Record<string, string>;
const workers: ServiceProcess[] = [];
const auth = { authorization: `Bearer ${API_TOKEN}` };

const storedBytes = async (wamid: string, timeoutMs: number) => {
  const m = await eventually(async () => {
    const r = await mediaOf(db, wamid);
    return r?.status === 'stored' ? r : null;
  }, { what: 'media stored', timeoutMs });
  return Buffer.from(await (await fetch(`${web.url}/v1/media/${m.messageId}`, { headers: auth })).arrayBuffer());
};

beforeAll(async () => {
  [db, sim] = await Promise.all([
    createTestDb(),
    startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 1 } }),
  ]);
  env = testEnv(db, { GRAPH_API_BASE_URL: sim.url, MEDIA_POLL_MS: '50', MEDIA_BACKOFF_MS: '1000', MEDIA_ATTEMPTS: '12', WORKER_LOCK_MS: '2000', MEDIA_TIMEOUT_MS: '3000' });
  web = await startApp(db, 'web', env);
});
afterAll(async () => {
  for (const w of workers) await w.kill();
  await web?.stop();
  await sim?.close();
  await db?.drop();
});

describe('media downloads under a crash', () => {
  it('stores a download exactly once after its worker is SIGKILLed mid-download', async () => {
    // 8 MB at 2 MB/s: the kill lands mid-stream.
    sim.configure({ mediaBytesPerSecond: 2 * 1024 * 1024 });
    const first = spawnService('worker', env);
    workers.push(first);
    const bytes = bytesOf(8 * 1024 * 1024);
    const { wamid, item } = await receiveMedia(web.url, sim, 'document', bytes, 'application/pdf');
    await eventually(async () => item.served > 1024 * 1024, { what: 'download under way', timeoutMs: 60_000 });
    await first.kill('SIGKILL');
    expect((await mediaOf(db, wamid))?.status).toBe('pending');
    sim.configure({ mediaBytesPerSecond: 0 });
    workers.push(spawnService('worker', env));
    expect((await storedBytes(wamid, 60_000)).equals(bytes)).toBe(true);
    const key = `sha256/${item.sha256.slice(0, 2)}/${item.sha256}`;
    expect((await mediaOf(db, wamid))?.storageKey).toBe(key);
    // Once: the store holds that one object; the killed worker's temp file is swept once it is
    // older than a download's idle timeout.
    const files = () => fs.readdirSync(env.MEDIA_FS_DIR!, { recursive: true, withFileTypes: true }).filter((f) => f.isFile()).map((f) => `${f.parentPath.slice(env.MEDIA_FS_DIR!.length + 1)}/${f.name}`);
    await eventually(async () => files().length === 1, { timeoutMs: 20_000 }).catch(() => undefined);
    expect(files()).toEqual([key]);
  }, 180_000);
});
