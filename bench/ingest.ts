// Ingest: signed 1.5 KB webhooks at 50 connections, durably enqueued, beside bare
// node:http and bare BullMQ Queue.add measured in the same run. Only the web role runs: no
// worker drains the queue and Postgres is idle, so this is the webhook's own ceiling. wrk is
// closed-loop (50 requests in flight, each connection sends its next on the answer), so the p99
// is the latency at saturation with 50 waiting, not at a given arrival rate.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { bareBullmqAdd } from './baselines/bullmq-add.js';
import { result, type BenchResult } from './lib/results.js';
import { APP_SECRET, startBaseline, startRole, type BenchStack } from './lib/stack.js';
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
  const load = `${body.length}-byte signed bodies, wrk closed-loop at 50 connections for ${seconds} s after 2 s of warm-up; 1 web process only (no worker, Postgres idle); Redis AOF fsync every second`;
  const failed = errors > 0 ? `${errors} errors` : undefined;
  return [
    result({ name: 'ingest.webhooks_per_s', value: errors === 0 ? ours.rps : 0, unit: 'req/s', baseline: bareRun.rps, baselineName: 'bare node:http', target: 15_000, failed, note: `webhooks answered 200 per second: HMAC check, JSON envelope check, one BullMQ job per event-loop tick; ${load}` }),
    result({ name: 'ingest.share_of_bare_http', value: errors === 0 ? ours.rps / bareRun.rps : 0, unit: 'ratio', baseline: null, ratio: null, target: 0.18, failed, note: 'ingest.webhooks_per_s / a bare node:http server that reads the body and answers 200 (no HMAC, no Redis), same wrk run shape' }),
    result({ name: 'ingest.p99_ms', value: ours.p99Ms, unit: 'ms', baseline: bareRun.p99Ms, baselineName: 'bare node:http p99', target: 15, targetKind: 'max', failed, note: `wrk's p99 from send to answer with 50 in flight (saturation, not a given arrival rate); ${load}` }),
    result({ name: 'ingest.bare_bullmq_add_per_s', value: add.perSecond, unit: 'add/s', baseline: null, target: null, note: 'reference: one Queue.add per body, 50 in flight, no HTTP, no batching, same Redis' }),
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

    const bare = await startBaseline(BARE_HTTP_WAIT, [stack.redis.url, APP_SECRET]);
    const bareRun = await measure(`http://127.0.0.1:${bare.port}/webhooks/whatsapp`, bodyFile, sig, seconds);
    await bare.stop();
    await master.flushall();

    const web = await startRole('web', stack.serviceEnv({ QUEUE_PREFIX: 'bench-ingest-repl', ACK_DURABILITY: 'replicated', ACK_REPLICAS: '1' }));
    const ours = await measure(`http://127.0.0.1:${web.port}/webhooks/whatsapp`, bodyFile, sig, seconds);
    const accepted = await acceptedCount(web.port);
    await web.stop();
    await master.flushall();
    await master.quit();
    const errors = ours.non2xx + ours.socketErrors;
    const bareErrors = bareRun.non2xx + bareRun.socketErrors;
    console.log(`  ingest (replicated): ${Math.round(ours.rps)}/s p99 ${ours.p99Ms.toFixed(1)} ms (non-2xx ${ours.non2xx}, socket errors ${ours.socketErrors}, accepted ${accepted}); bare node:http + HMAC + one job and one WAIT per tick ${Math.round(bareRun.rps)}/s p99 ${bareRun.p99Ms.toFixed(1)} ms (${bareErrors} errors)`);
    const load = `${body.length}-byte signed bodies, wrk closed-loop at 50 connections for ${seconds} s after 2 s of warm-up; 1 web process only; one Redis master + 1 replica on this host, no Sentinel`;
    const failed = errors > 0 ? `${errors} errors` : bareErrors > 0 ? `baseline had ${bareErrors} errors` : undefined;
    const baselineName = 'bare node:http: HMAC + JSON.parse + one BullMQ job and one WAIT 1 per tick';
    return [
      result({ name: 'ingest.replicated_webhooks_per_s', value: errors === 0 ? ours.rps : 0, unit: 'req/s', baseline: bareRun.rps, baselineName, target: 10_000, failed, note: `webhooks answered 200 once the replica confirmed their job (ACK_DURABILITY=replicated); ${load}` }),
      result({ name: 'ingest.replicated_p99_ms', value: ours.p99Ms, unit: 'ms', baseline: bareRun.p99Ms, baselineName: `${baselineName}, p99`, target: 25, targetKind: 'max', failed, note: `wrk's p99 with 50 in flight (saturation); ${load}` }),
    ];
  } finally {
    await replica.stop();
  }
}
