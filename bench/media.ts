// Media: inbound images and documents downloaded from the Graph simulator into the object store
// by one worker process. Stored per second for 100 KB images, beside the same-run baseline of raw
// downloads (metadata, then bytes) from the same simulator into the same store, as many in
// flight; and the worker's peak RSS while 20 documents of 50 MB download at once (streaming,
// not buffering), beside its own idle RSS.
import fs from 'node:fs';
import path from 'node:path';
import { createHmac, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { startGraphSimulator, type GraphSimulator } from '../scripts/graph-sim/server.js';
import { startS3 } from '../scripts/stack/versitygw.js';
import { sleep } from '../scripts/stack/proc.js';
import { dbTransactions, redisCommands, startCostMeter, treeCpuSeconds } from './lib/cost.js';
import { result, type BenchResult } from './lib/results.js';
import { APP_SECRET, PHONE_NUMBER_ID, ROOT, startBaseline, startRole, type BenchStack } from './lib/stack.js';

/** Downloads in flight, in the worker (MEDIA_CONCURRENCY, its default) and in the raw baseline alike. */
const IN_FLIGHT = Number(process.env.BENCH_MEDIA_IN_FLIGHT ?? 16);
/** BENCH_MEDIA_DOCS=0 skips the memory part (when only the images' figures are wanted). */
const DOCS = Number(process.env.BENCH_MEDIA_DOCS ?? 20);
const DOC_BYTES = 50 * 1024 * 1024;

/**
 * The store to bench: `s3` (Versity S3 Gateway, the default) or `fs`; `spec` rebuilds it in the raw
 * baseline's process; `cpu` is the CPU-seconds so far of its server (none for fs).
 */
async function benchStore(stack: BenchStack, kind: string): Promise<{ env: Record<string, string>; spec: object; cpu(): number; stop(): Promise<void> }> {
  if (kind === 'fs') {
    const dir = path.join(stack.dir, 'media');
    return { env: { MEDIA_STORE: 'fs', MEDIA_FS_DIR: dir }, spec: { kind: 'fs', dir }, cpu: () => 0, stop: async () => undefined };
  }
  const s3 = await startS3({ dir: path.join(stack.dir, 's3'), bucket: 'bench-media' });
  const spec = { kind: 's3', bucket: s3.bucket, region: 'us-east-1', endpoint: s3.endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, forcePathStyle: true };
  return { env: s3.env, spec, cpu: () => treeCpuSeconds(s3.pid), stop: () => s3.stop() };
}

function webhook(items: { id: string; sha256: string }[], mime: string, type: 'image' | 'document', offset: number): string {
  const messages = items.map((it, i) => ({ from: `5511${900000000 + offset + i}`, id: `wamid.bench-media-${offset + i}-${randomBytes(4).toString('hex')}`, timestamp: String(Math.floor(Date.now() / 1000)), type, [type]: { id: it.id, mime_type: mime, sha256: it.sha256 } }));
  const contacts = messages.map((m) => ({ profile: { name: 'Bench' }, wa_id: m.from }));
  return JSON.stringify({ object: 'whatsapp_business_account', entry: [{ id: '1', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550783881', phone_number_id: PHONE_NUMBER_ID }, contacts, messages } }] }] });
}

async function post(url: string, body: string): Promise<void> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': 'sha256=' + createHmac('sha256', APP_SECRET).update(body).digest('hex') }, body });
  if (res.status !== 200) throw new Error(`webhook answered ${res.status}`);
}

const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

async function storedCount(stack: BenchStack, type: string): Promise<{ stored: number; failed: number }> {
  const { rows } = await stack.pool.query<{ stored: number; failed: number }>("SELECT count(*) FILTER (WHERE status = 'stored')::int AS stored, count(*) FILTER (WHERE status = 'failed')::int AS failed FROM media WHERE type = $1", [type]);
  return rows[0]!;
}

/** CPU-seconds so far of each process taking part, and the work the servers counted. */
interface Costs {
  readonly worker: number;
  readonly postgres: number;
  readonly redis: number;
  /** The object store's server. */
  readonly store: number;
  /** This process: the Graph simulator (and the bench's own polling, one count every 100 ms). */
  readonly simulator: number;
  readonly dbTransactions: number;
  readonly redisCommands: number;
}

async function costs(stack: BenchStack, redis: Redis, workerPid: number, storeCpu: () => number): Promise<Costs> {
  const self = process.cpuUsage();
  return {
    worker: treeCpuSeconds(workerPid),
    postgres: treeCpuSeconds(stack.postgres.pid),
    redis: treeCpuSeconds(stack.redis.pid),
    store: storeCpu(),
    simulator: (self.user + self.system) / 1e6,
    dbTransactions: await dbTransactions(stack.pool),
    redisCommands: await redisCommands(redis),
  };
}

const perThousand = (a: number, b: number, n: number) => ((b - a) / n) * 1000;

/** The raw baseline, in its own process (see baselines/raw-media-downloads.ts). */
async function rawDownloads(sim: GraphSimulator, spec: object, storeCpu: () => number, ids: string[]): Promise<{ rate: number; cpuPerThousand: number; storePerThousand: number }> {
  const raw = await startBaseline(path.join(ROOT, 'bench', 'baselines', 'raw-media-downloads.ts'), [sim.url, 'bench-token', String(IN_FLIGHT), JSON.stringify(spec)]);
  try {
    const sim0 = process.cpuUsage();
    const store0 = storeCpu();
    const done = new Promise<{ seconds: number; cpuSeconds: number }>((resolve, reject) => {
      raw.child.once('message', (m) => resolve(m as { seconds: number; cpuSeconds: number }));
      raw.child.once('exit', (code) => reject(new Error(`raw downloads exited ${code}`)));
    });
    raw.child.send({ ids });
    const r = await done;
    const sim = process.cpuUsage(sim0);
    return { rate: ids.length / r.seconds, cpuPerThousand: ((r.cpuSeconds + (sim.user + sim.system) / 1e6) / ids.length) * 1000, storePerThousand: perThousand(store0, storeCpu(), ids.length) };
  } finally {
    await raw.stop();
  }
}

export async function mediaBench(stack: BenchStack, images = 2_000): Promise<BenchResult[]> {
  const storeKind = process.env.BENCH_MEDIA_STORE ?? 's3';
  const { env: storeEnv, spec, cpu: storeCpu, stop } = await benchStore(stack, storeKind);
  const sim = await startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'bench-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 1 } });
  const env = stack.serviceEnv({ ...storeEnv, QUEUE_PREFIX: 'bench-media', GRAPH_API_BASE_URL: sim.url, MEDIA_CONCURRENCY: String(IN_FLIGHT) });
  const web = await startRole('web', env);
  const redis = new Redis(stack.redis.url);
  const hook = `http://127.0.0.1:${web.port}/webhooks/whatsapp`;
  try {
    // Throughput: a backlog of images whose messages are stored before the measured worker starts
    // (by a worker that looks for media to download once a minute, stopped before it looks again),
    // so its figures are the media pipeline's alone, not storing the inbound messages as well.
    const items = Array.from({ length: images }, () => sim.media.add(randomBytes(100 * 1024), 'image/jpeg'));
    const loader = await startRole('worker', { ...env, MEDIA_POLL_MS: '60000' });
    // Its first look, at start, is over before any image message is stored.
    await sleep(1_000);
    for (let i = 0; i < items.length; i += 50) await post(hook, webhook(items.slice(i, i + 50), 'image/jpeg', 'image', i));
    const loadDeadline = Date.now() + 45_000;
    const backlog = async () => (await stack.pool.query<{ total: number; queued: number }>("SELECT count(*)::int AS total, count(enqueued_at)::int AS queued FROM media WHERE type = 'image'")).rows[0]!;
    while ((await backlog()).total < images && Date.now() < loadDeadline) await sleep(200);
    await loader.stop();
    const ready = await backlog();
    if (ready.total < images || ready.queued > 0) throw new Error(`media bench: ${ready.total} of ${images} image messages stored, ${ready.queued} queued before the measured worker started`);
    // Held back (as if queued just now) while the measured worker starts, and released once its
    // CPU-seconds are read: every image it downloads is inside the measurement, its start-up is not.
    await stack.pool.query("UPDATE media SET enqueued_at = now() WHERE type = 'image'");
    const worker = await startRole('worker', env);
    const before = await costs(stack, redis, worker.child.pid!, storeCpu);
    // With BENCH_PG_STATEMENTS=1 (pg_stat_statements loaded), which statements the images cost.
    const meter = await startCostMeter(stack.pool, {});
    await stack.pool.query("UPDATE media SET enqueued_at = NULL WHERE type = 'image'");
    let c = await storedCount(stack, 'image');
    const deadline = Date.now() + 600_000;
    // Counted twice a second: the rate comes from the rows' own times, and a count is a scan of
    // the table that Postgres's CPU figure below would otherwise charge to the worker.
    while (c.stored + c.failed < images && Date.now() < deadline) {
      await sleep(500);
      c = await storedCount(stack, 'image');
    }
    const after = await costs(stack, redis, worker.child.pid!, storeCpu);
    await worker.stop();
    const { statements } = await meter.stop();
    // From the first claim to the last row stored, as the database recorded them: the worker's
    // start-up is not timed, and the bench's polling interval does not round the figure.
    const { rows: [span] } = await stack.pool.query<{ seconds: number }>("SELECT extract(epoch FROM max(stored_at) - min(enqueued_at))::float8 AS seconds FROM media WHERE type = 'image'");
    const rate = c.stored / span!.seconds;
    const n = c.stored;
    const cost = {
      worker: perThousand(before.worker, after.worker, n),
      postgres: perThousand(before.postgres, after.postgres, n),
      redis: perThousand(before.redis, after.redis, n),
      store: perThousand(before.store, after.store, n),
      simulator: perThousand(before.simulator, after.simulator, n),
      statements: (after.dbTransactions - before.dbTransactions) / n,
      redisCommands: (after.redisCommands - before.redisCommands) / n,
    };
    const rawIds = Array.from({ length: images }, () => sim.media.add(randomBytes(100 * 1024), 'image/jpeg').id);
    const raw = await rawDownloads(sim, spec, storeCpu, rawIds);
    for (const id of [...items.map((i) => i.id), ...rawIds]) sim.media.items.delete(id);
    console.log(`  media: ${c.stored}/${images} images stored (${c.failed} failed) at ${rate.toFixed(0)}/s; raw downloads into the same ${storeKind} store ${raw.rate.toFixed(0)}/s`);
    const cpuNote = `CPU-seconds per 1,000 stored: worker ${cost.worker.toFixed(2)}, postgres ${cost.postgres.toFixed(2)}, redis ${cost.redis.toFixed(2)}, ${storeKind} store ${cost.store.toFixed(2)}, simulator ${cost.simulator.toFixed(2)} (raw baseline: downloader + simulator ${raw.cpuPerThousand.toFixed(2)}, store ${raw.storePerThousand.toFixed(2)}); per stored image ${cost.statements.toFixed(2)} database transactions, ${cost.redisCommands.toFixed(1)} Redis commands`;
    console.log(`  media: ${cpuNote}`);
    if (statements) {
      console.log('  media: statements per stored image (web, worker and the bench\'s own counts), most called:');
      for (const st of statements.slice(0, 8)) console.log(`    ${(st.calls / n).toFixed(3)}  ${st.query}`);
    }

    const imagesResult = result({ name: 'media.images_stored_per_s', value: rate, unit: 'images/s', baseline: raw.rate, baselineName: `raw downloads (metadata, bytes) into the same ${storeKind} store, ${IN_FLIGHT} in flight`, target: 200, failed: c.stored < images ? `${images - c.stored} of ${images} not stored` : undefined, note: `${images} inbound 100 KB images (50 per webhook) posted before one worker process starts (MEDIA_CONCURRENCY ${IN_FLIGHT}); from the first claim to the last row stored: Graph metadata, bytes streamed through the SHA-256 check into ${storeKind}, row updated; raw baseline in its own process with the same HTTP client and store. ${cpuNote}` });
    if (DOCS === 0) return [imagesResult];

    // Memory: 20 documents of 50 MB at once (distinct bytes: no deduplication).
    const docWorker = await startRole('worker', { ...env, MEDIA_CONCURRENCY: String(DOCS) });
    await sleep(2_000);
    const idle = rssOf(docWorker.child.pid!);
    const docs = Array.from({ length: DOCS }, (_, i) => sim.media.add(Buffer.alloc(DOC_BYTES, i + 1), 'application/pdf'));
    await post(hook, webhook(docs, 'application/pdf', 'document', 1_000_000));
    let peak = idle;
    let d = await storedCount(stack, 'document');
    const docDeadline = Date.now() + 600_000;
    while (d.stored + d.failed < DOCS && Date.now() < docDeadline) {
      peak = Math.max(peak, rssOf(docWorker.child.pid!));
      await sleep(100);
      d = await storedCount(stack, 'document');
    }
    await docWorker.stop();
    console.log(`  media: ${d.stored}/${DOCS} documents of 50 MB stored (${d.failed} failed); worker RSS peak ${peak.toFixed(0)} MB, idle ${idle.toFixed(0)} MB`);
    return [
      imagesResult,
      result({ name: 'media.worker_rss_peak_mb', value: peak, unit: 'MB', baseline: idle, baselineName: 'the same worker idle', target: 300, targetKind: 'max', failed: d.stored < DOCS ? `${DOCS - d.stored} of ${DOCS} not stored` : undefined, note: `${DOCS} documents of 50 MB downloading at once (MEDIA_CONCURRENCY ${DOCS}) into ${storeKind}, RSS sampled every 100 ms` }),
    ];
  } finally {
    redis.disconnect();
    await web.stop();
    await sim.close();
    await stop();
  }
}
