// Ingest: signed 1.5 KB webhooks at 50 connections, durably enqueued, beside bare
// node:http and bare BullMQ Queue.add measured in the same run.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { bareBullmqAdd } from './baselines/bullmq-add.js';
import { result, type BenchResult } from './lib/results.js';
import { startBaseline, startRole, type BenchStack } from './lib/stack.js';
import { freePort } from '../scripts/stack/proc.js';
import { startRedis } from '../scripts/stack/redis.js';
import { signature, textWebhook } from './lib/payloads.js';
import { wrk, type WrkResult } from './lib/wrk.js';

const BARE_HTTP = fileURLToPath(new URL('./baselines/bare-http.ts', import.meta.url));
const BARE_HTTP_WAIT = fileURLToPath(new URL('./baselines/bare-http-wait.ts', import.meta.url));

async function measure(url: string, bodyFile: string, sig: string | undefined, seconds: number): Promise<WrkResult> {
  await wrk(url, { bodyFile, signature: sig, connections: 50, seconds: 2 });
  return wrk(url, { bodyFile, signature: sig, connections: 50, seconds });
}

async function acceptedCount(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = /wa_router_webhook_requests_total\{outcome="accepted"\} (\d+)/.exec(text);
  return m ? Number(m[1]) : 0;
}

export async function ingestBench(stack: BenchStack, seconds: number): Promise<BenchResult[]> {
  const body = textWebhook(1);
  const bodyFile = path.join(stack.dir, 'ingest-body.json');
  fs.writeFileSync(bodyFile, body);
  const sig = signature(body);

  const bare = await startBaseline(BARE_HTTP);
  const bareRun = await measure(`http://127.0.0.1:${bare.port}/webhooks/whatsapp`, bodyFile, undefined, seconds);
  await bare.stop();

  const web = await startRole('web', stack.serviceEnv({ QUEUE_PREFIX: 'bench-ingest' }));
  const ours = await measure(`http://127.0.0.1:${web.port}/webhooks/whatsapp`, bodyFile, sig, seconds);
  const accepted = await acceptedCount(web.port);
  await web.stop();
  const redis = new Redis(stack.redis.url);
  await redis.flushall();
  await redis.quit();

  const add = await bareBullmqAdd(stack.redis.url, body, seconds);
  const errors = ours.non2xx + ours.socketErrors;
  console.log(`  ingest: ${Math.round(ours.rps)}/s p99 ${ours.p99Ms.toFixed(1)} ms (non-2xx ${ours.non2xx}, socket errors ${ours.socketErrors}, accepted by the service ${accepted}); bare node:http ${Math.round(bareRun.rps)}/s p99 ${bareRun.p99Ms.toFixed(1)} ms; bare BullMQ add ${Math.round(add.perSecond)}/s`);
  const note = `${body.length}-byte signed bodies, 50 connections, ${seconds} s; ${errors} errors`;
  return [
    result({ name: 'ingest.webhooks_per_s', value: errors === 0 ? ours.rps : 0, unit: 'req/s', baseline: bareRun.rps, baselineName: 'bare node:http', target: 15_000, note }),
    result({ name: 'ingest.share_of_bare_http', value: ours.rps / bareRun.rps, unit: 'ratio', baseline: null, ratio: null, target: 0.18, note: 'ingest.webhooks_per_s / bare node:http in the same run' }),
    result({ name: 'ingest.p99_ms', value: ours.p99Ms, unit: 'ms', baseline: bareRun.p99Ms, baselineName: 'bare node:http p99', target: 15, targetKind: 'max' }),
    result({ name: 'ingest.bare_bullmq_add_per_s', value: add.perSecond, unit: 'add/s', baseline: null, target: null, note: 'reference: Queue.add, 50 in flight, no HTTP' }),
  ];
}

/**
 * Replicated acks (ACK_DURABILITY=replicated): every webhook answered 200 only once a replica has
 * its job (Redis WAIT). Beside a bare node:http server doing the same add + one WAIT per tick.
 */
export async function ingestReplicatedBench(stack: BenchStack, seconds: number): Promise<BenchResult[]> {
  const body = textWebhook(2);
  const bodyFile = path.join(stack.dir, 'ingest-replicated-body.json');
  fs.writeFileSync(bodyFile, body);
  const sig = signature(body);
  const password = new URL(stack.redis.url).password;
  const replica = await startRedis({ dir: path.join(stack.dir, 'redis-replica'), port: await freePort(), password: decodeURIComponent(password), replicaOf: { host: '127.0.0.1', port: stack.redis.port }, maxmemory: '2gb' });
  try {
    const master = new Redis(stack.redis.url);
    for (let i = 0; i < 100; i++) {
      const info = await master.info('replication');
      if (/connected_slaves:1/.test(info) && /state=online/.test(info)) break;
      await new Promise((r) => setTimeout(r, 100));
    }

    const bare = await startBaseline(BARE_HTTP_WAIT, [stack.redis.url]);
    const bareRun = await measure(`http://127.0.0.1:${bare.port}/webhooks/whatsapp`, bodyFile, undefined, seconds);
    await bare.stop();
    await master.flushall();

    const web = await startRole('web', stack.serviceEnv({ QUEUE_PREFIX: 'bench-ingest-repl', ACK_DURABILITY: 'replicated', ACK_REPLICAS: '1' }));
    const ours = await measure(`http://127.0.0.1:${web.port}/webhooks/whatsapp`, bodyFile, sig, seconds);
    const accepted = await acceptedCount(web.port);
    await web.stop();
    await master.flushall();
    await master.quit();
    const errors = ours.non2xx + ours.socketErrors;
    console.log(`  ingest (replicated): ${Math.round(ours.rps)}/s p99 ${ours.p99Ms.toFixed(1)} ms (non-2xx ${ours.non2xx}, socket errors ${ours.socketErrors}, accepted ${accepted}); bare node:http + add + WAIT per tick ${Math.round(bareRun.rps)}/s p99 ${bareRun.p99Ms.toFixed(1)} ms`);
    const note = `${body.length}-byte signed bodies, 50 connections, ${seconds} s, 1 replica on this host; ${errors} errors`;
    return [
      result({ name: 'ingest.replicated_webhooks_per_s', value: errors === 0 ? ours.rps : 0, unit: 'req/s', baseline: bareRun.rps, baselineName: 'bare node:http + BullMQ add + WAIT 1 per tick', target: 10_000, note }),
      result({ name: 'ingest.replicated_p99_ms', value: ours.p99Ms, unit: 'ms', baseline: bareRun.p99Ms, baselineName: 'same baseline p99', target: 25, targetKind: 'max' }),
    ];
  } finally {
    await replica.stop();
  }
}
