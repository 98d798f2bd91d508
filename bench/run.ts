// `make bench`: every benchmark with its same-run baseline; prints one table and writes
// bench/results/latest.json (+ latest.md). BENCH_ONLY=ingest,e2e picks some; BENCH_SECONDS sets durations.
import path from 'node:path';
import { e2eBench } from './e2e.js';
import { ingestBench, ingestReplicatedBench } from './ingest.js';
import { outboundBench } from './outbound.js';
import { historyBench } from './history.js';
import { routerBench } from './router.js';
import { inboxBench } from './inbox.js';
import { fanoutBench } from './fanout.js';
import { mediaBench } from './media.js';
import { table, writeResults, type BenchResult } from './lib/results.js';
import { writeBenchCharts } from './lib/svg.js';
import { settle, startBenchStack } from './lib/stack.js';

const only = new Set((process.env.BENCH_ONLY ?? 'ingest,ingest-replicated,e2e,history,outbound,router,inbox,fanout,media').split(',').map((s) => s.trim()));
const seconds = Number(process.env.BENCH_SECONDS ?? 10);

async function main(): Promise<void> {
  const results: BenchResult[] = [];
  const stack = await startBenchStack();
  try {
    if (only.has('ingest')) {
      console.log('ingest: webhook → durable enqueue');
      results.push(...(await ingestBench(stack, seconds)));
    }
    if (only.has('ingest-replicated')) {
      await settle(stack);
      console.log('ingest (replicated): webhook → enqueue confirmed by a replica');
      results.push(...(await ingestReplicatedBench(stack, seconds)));
    }
    if (only.has('e2e')) {
      await settle(stack);
      console.log('e2e: webhook → rows in Postgres');
      const n = Number(process.env.BENCH_E2E_MESSAGES ?? 30_000);
      // Meta's text webhooks are ~600 bytes (its documented example is 570): the target
      // figure. The 1.5 KB bodies of the ingest benchmark are reported beside it.
      results.push(...(await e2eBench(stack, n, 640)));
      results.push(...(await e2eBench(stack, n, 1536, 'e2e.messages_per_s_1_5kb', null)));
    }
    if (only.has('history')) {
      await settle(stack);
      console.log('history: 50,000-message coexistence sync → rows in Postgres');
      results.push(...(await historyBench(stack, Number(process.env.BENCH_HISTORY_MESSAGES ?? 50_000))));
    }
    if (only.has('outbound')) {
      await settle(stack);
      console.log('outbound: POST /v1/messages → Graph API simulator');
      results.push(...(await outboundBench(stack, Number(process.env.BENCH_OUTBOUND_MESSAGES ?? 10_000))));
    }
    if (only.has('router')) {
      await settle(stack);
      console.log('router: webhook → signed forward to areas');
      results.push(...(await routerBench(stack, seconds)));
    }
    if (only.has('inbox')) {
      await settle(stack);
      console.log('inbox: conversation list and messages pages, 100,000 conversations / 5,000,000 messages');
      results.push(...(await inboxBench(stack, seconds)));
    }
    if (only.has('fanout')) {
      await settle(stack);
      console.log('fanout: webhook → row → 1,000 SSE clients on 2 web processes');
      results.push(...(await fanoutBench(stack, seconds)));
    }
    if (only.has('media')) {
      await settle(stack);
      console.log('media: inbound media → object store (one worker)');
      results.push(...(await mediaBench(stack, Number(process.env.BENCH_MEDIA_IMAGES ?? 2_000))));
    }
  } finally {
    await stack.stop();
  }
  const files = writeResults(results, {
    only: [...only], seconds,
    e2eMessages: Number(process.env.BENCH_E2E_MESSAGES ?? 30_000),
    historyMessages: Number(process.env.BENCH_HISTORY_MESSAGES ?? 50_000),
    outboundMessages: Number(process.env.BENCH_OUTBOUND_MESSAGES ?? 10_000),
  });
  const charts = writeBenchCharts(path.dirname(files.json), results, files.generatedAt);
  console.log('\n' + table(results) + `\n\nwritten: ${files.json}, ${files.md}, ${charts.join(', ')} (README: npx tsx bench/figures.ts)`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
