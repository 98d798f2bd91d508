// Baseline for the media benchmark, in its own process as the worker is: `concurrency` loops,
// each asking the Graph simulator for a media's metadata and streaming its bytes into the same
// store under the same content-addressed key, with the service's own HTTP client (undici,
// keep-alive) and store classes. No queue, no database, no checks: what the service's
// pipeline is measured against.
// argv: port (unused), Graph base URL, token, concurrency, store JSON ({ kind: 'fs', dir } or
// { kind: 's3', ...S3StoreOptions }). IPC: receives { ids }, answers { seconds, cpuSeconds }.
import { GraphMediaClient } from '../../service/src/media/graph-media.js';
import { S3MediaStore, type S3StoreOptions } from '../../service/src/media/s3-store.js';
import { FsMediaStore, keyForSha256, type MediaStore } from '../../service/src/media/store.js';

const [graphUrl, token, concurrency, storeJson] = [process.argv[3]!, process.argv[4]!, Number(process.argv[5]), process.argv[6]!];
const spec = JSON.parse(storeJson) as { kind: 'fs'; dir: string } | ({ kind: 's3' } & S3StoreOptions);
const store: MediaStore = spec.kind === 'fs' ? new FsMediaStore(spec.dir) : new S3MediaStore(spec);
const graph = new GraphMediaClient({ baseUrl: graphUrl, version: 'v23.0', timeoutMs: 30_000 });

async function download(id: string): Promise<void> {
  const info = await graph.info(id, token);
  if (!info.ok) throw new Error(`metadata of ${id}: ${info.error.title}`);
  const res = await graph.download(info.value.url, token);
  if (!res.ok) throw new Error(`bytes of ${id}: HTTP ${res.status}`);
  // The declared size and SHA-256, as the worker passes them: the same single streamed PutObject
  // (not a multipart upload) carrying the checksum the store verifies.
  await store.put(keyForSha256(info.value.sha256!), res.body, info.value.mimeType, info.value.fileSize, info.value.sha256);
}

process.on('message', (msg: { ids: string[] }) => {
  void (async () => {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < msg.ids.length) await download(msg.ids[next++]!);
    }));
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    process.send!({ seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 });
  })().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
});
process.send!('ready');
