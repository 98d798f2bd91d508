// A worker's memory while many large documents download at once into a real S3-compatible store
// (Versity S3 Gateway): an upload streams through, so what the worker holds does not grow with the
// number of downloads times a multipart part.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import type { S3Handle } from '../../../scripts/stack/versitygw.js';
import { APP_SECRET, createTestDb, PHONE_NUMBER_ID, testEnv, type TestDb } from '../helpers/context.js';
import { eventually, startApp, type RunningApp } from '../helpers/app.js';
import { spawnService, type ServiceProcess } from '../helpers/process.js';
import { mediaOf, receiveItem, startTestS3 } from '../helpers/media.js';

const DOCS = 20;
const DOC_BYTES = 12 * 1024 * 1024;
/**
 * The growth allowed over the idle worker. Buffered multipart uploads (lib-storage, 5 MiB parts,
 * two in flight) grew it by ~345 MB here; streamed through PutObject, by ~215 MB (what remains is
 * the downloads' stream buffers and garbage not yet collected).
 */
const MAX_GROWTH_MB = 280;

let db: TestDb;
let sim: GraphSimulator;
let s3: S3Handle;
let starting: Promise<PromiseSettledResult<unknown>[]> | undefined;
let web: RunningApp;
let worker: ServiceProcess | undefined;
let env: Record<string, string>;

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

beforeAll(async () => {
  // Each handle kept as it comes, and afterAll waits for every start: when one fails (or this hook
  // times out), what the others started is still stopped.
  starting = Promise.allSettled([
    createTestDb().then((d) => (db = d)),
    startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 1 } }).then((g) => (sim = g)),
    startTestS3().then((h) => (s3 = h)),
  ]);
  for (const r of await starting) if (r.status === 'rejected') throw r.reason;
  env = testEnv(db, { ...s3.env, GRAPH_API_BASE_URL: sim.url, MEDIA_CONCURRENCY: String(DOCS), MEDIA_POLL_MS: '50' });
  web = await startApp(db, 'web', env);
}, 300_000);
afterAll(async () => {
  await starting;
  await worker?.kill();
  await web?.stop();
  await sim?.close();
  await s3?.stop();
  await db?.drop();
});

describe('worker memory with large media into S3', () => {
  it(`stays within ${MAX_GROWTH_MB} MB over idle while ${DOCS} documents of ${DOC_BYTES / 2 ** 20} MiB download at once`, async () => {
    // Slowed so that all downloads are in flight together, as with Meta's CDN.
    sim.configure({ mediaBytesPerSecond: 8 * 1024 * 1024 });
    worker = spawnService('worker', env);
    const pid = worker.child.pid!;
    // Idle once booted: the RSS settled (tsx compiles the modules first).
    await new Promise((r) => setTimeout(r, 5_000));
    let idle = rssMb(pid);
    await eventually(async () => {
      const before = idle;
      idle = rssMb(pid);
      return Math.abs(idle - before) < 2;
    }, { what: 'the worker idle', timeoutMs: 120_000, intervalMs: 3_000 });
    // Distinct bytes: nothing is deduplicated.
    const wamids: string[] = [];
    for (let i = 0; i < DOCS; i++) wamids.push((await receiveItem(web.url, 'document', sim.media.add(Buffer.alloc(DOC_BYTES, i + 1), 'application/pdf'), `55119777${String(i).padStart(5, '0')}`)).wamid);
    let peak = idle;
    const statuses = await eventually(async () => {
      peak = Math.max(peak, rssMb(pid));
      const all = await Promise.all(wamids.map((w) => mediaOf(db, w)));
      return all.every((m) => m && m.status !== 'pending') ? all.map((m) => m!.status) : null;
    }, { what: 'every document stored', timeoutMs: 240_000, intervalMs: 100 }).catch((err: Error) => {
      throw new Error(`${err.message}; worker output: ${worker!.output().slice(-2_000)}`);
    });
    expect(statuses).toEqual(wamids.map(() => 'stored'));
    expect(peak - idle, `RSS peak ${peak.toFixed(0)} MB, idle ${idle.toFixed(0)} MB`).toBeLessThan(MAX_GROWTH_MB);
  }, 300_000);
});
