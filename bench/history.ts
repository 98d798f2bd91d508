// Coexistence history: 50,000 messages (about 500 conversations, mixed types) in 100 chunk
// webhooks, from the first POST to the last row committed, with live webhooks posted during the
// sync and their latency to Postgres measured. Baseline: a bare Postgres COPY of the same rows
// into a table shaped like messages, in the same run.
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import pgCopy from 'pg-copy-streams';
import { historyChunks } from './lib/history.js';
import { result, type BenchResult } from './lib/results.js';
import { PHONE_NUMBER_ID, startRole, type BenchStack } from './lib/stack.js';
import { signature, textWebhook } from './lib/payloads.js';
import { sleep } from '../scripts/stack/proc.js';

/** COPY the same 50k rows (same columns as the sync writes) into a table like messages. */
async function copyBaseline(stack: BenchStack, chunks: ReturnType<typeof historyChunks>): Promise<number> {
  await stack.pool.query('DROP TABLE IF EXISTS bench_copy');
  await stack.pool.query('CREATE TABLE bench_copy (LIKE messages INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING INDEXES)');
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n');
  const lines: string[] = [];
  for (const c of chunks) {
    const value = JSON.parse(c.body).entry[0].changes[0].value;
    for (const t of value.history[0].threads) {
      for (const m of t.messages) {
        lines.push([m.id, '1', '1', '1', m.to ? 'outbound' : 'inbound', 'history', m.type, esc(m.text?.body ?? '\\N'), esc(JSON.stringify(m)), new Date(Number(m.timestamp) * 1000).toISOString(), 'delivered'].join('\t'));
      }
    }
  }
  const client = await stack.pool.connect();
  const t0 = performance.now();
  try {
    const stream = client.query(pgCopy.from('COPY bench_copy (wamid, channel_id, conversation_id, contact_id, direction, source, type, body, raw, wa_timestamp, status) FROM STDIN'));
    await pipeline(Readable.from(function* () {
      for (let i = 0; i < lines.length; i += 1000) yield lines.slice(i, i + 1000).join('\n') + '\n';
    }()), stream as unknown as Writable);
  } finally {
    client.release();
  }
  const seconds = (performance.now() - t0) / 1000;
  await stack.pool.query('DROP TABLE bench_copy');
  return seconds;
}

export async function historyBench(stack: BenchStack, total = 50_000): Promise<BenchResult[]> {
  const chunks = historyChunks({ phoneNumberId: PHONE_NUMBER_ID, messages: total, conversations: 500, perChunk: 500, prefix: 'BENCH' });
  await stack.pool.query("DELETE FROM messages WHERE wamid LIKE 'wamid.HISTBENCH%' OR wamid LIKE 'wamid.LIVEH%'");
  await stack.pool.query('DELETE FROM sync_chunks');
  await stack.pool.query('DELETE FROM sync_runs');
  await stack.pool.query('DELETE FROM inbound_events');
  const env = stack.serviceEnv({ QUEUE_PREFIX: 'bench-history', HISTORY_CONCURRENCY: '2' });
  const web = await startRole('web', env);
  const worker = await startRole('worker', env);
  const url = `http://127.0.0.1:${web.port}/webhooks/whatsapp`;
  const post = (body: string) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': signature(body) }, body }).then((r) => r.status);
  const count = async () => Number((await stack.pool.query("SELECT count(*) AS n FROM messages WHERE wamid LIKE 'wamid.HISTBENCH%'")).rows[0].n);
  // Polled every 20 ms: the run's counter, one row, moved in the same transaction as its chunk's
  // rows (so it is exact when committed). Counting 50,000 rows that often would load Postgres
  // more than the sync does; the rows themselves are counted once at the end.
  const committed = async () => Number((await stack.pool.query('SELECT coalesce(sum(messages_stored), 0) AS n FROM sync_runs')).rows[0].n);

  // Live traffic: 50 webhooks/s, each timed from POST to its row; 3 s alone first (the baseline),
  // then on through the sync.
  const liveSent = new Map<string, number>();
  const liveBefore = new Set<string>();
  let liveOn = true;
  let syncing = false;
  const live = (async () => {
    for (let i = 0; liveOn && i < 10_000; i++) {
      const body = textWebhook(i, { prefix: 'LIVEH', size: 640 });
      const wamid = `wamid.LIVEH${String(i).padStart(10, '0')}`;
      liveSent.set(wamid, Date.now());
      if (!syncing) liveBefore.add(wamid);
      void post(body);
      await sleep(20);
    }
  })();
  await sleep(3_000);
  syncing = true;

  const t0 = performance.now();
  let non200 = 0;
  for (let i = 0; i < chunks.length; i += 8) {
    const statuses = await Promise.all(chunks.slice(i, i + 8).map((c) => post(c.body)));
    non200 += statuses.filter((s) => s !== 200).length;
  }
  const postedSeconds = (performance.now() - t0) / 1000;
  const deadline = Date.now() + Number(process.env.BENCH_HISTORY_TIMEOUT_S ?? 180) * 1000;
  while (Date.now() < deadline && (await committed()) < total) await sleep(20);
  const seconds = (performance.now() - t0) / 1000;
  const stored = await count();
  liveOn = false;
  await live;
  await sleep(1_000);
  const { rows } = await stack.pool.query<{ wamid: string; at: Date }>('SELECT wamid, created_at AS at FROM messages WHERE wamid = ANY($1)', [[...liveSent.keys()]]);
  const p99Of = (list: typeof rows) => {
    const l = list.map((r) => r.at.getTime() - liveSent.get(r.wamid)!).sort((a, b) => a - b);
    return l[Math.min(l.length - 1, Math.floor(l.length * 0.99))] ?? NaN;
  };
  const p99 = p99Of(rows.filter((r) => !liveBefore.has(r.wamid)));
  const p99Alone = p99Of(rows.filter((r) => liveBefore.has(r.wamid)));
  await worker.stop();
  await web.stop();

  const copySeconds = await copyBaseline(stack, chunks);
  console.log(`  history: ${stored}/${total} messages in ${seconds.toFixed(2)} s (all ${chunks.length} chunks posted after ${postedSeconds.toFixed(2)} s, ${non200} not 200); live webhooks: ${rows.length}/${liveSent.size} stored, p99 ${p99} ms to the row during the sync, ${p99Alone} ms before it; bare COPY of the same rows ${copySeconds.toFixed(2)} s`);
  const ok = stored === total && non200 === 0;
  return [
    result({ name: 'history.sync_50k_seconds', value: ok ? seconds : Number.POSITIVE_INFINITY, unit: 's', baseline: copySeconds, baselineName: 'bare COPY of the same rows', target: 10, targetKind: 'max', note: `${total} messages, 500 conversations, ${chunks.length} chunk webhooks, 1 web + 1 worker process, first POST to last row committed` }),
    result({ name: 'history.live_webhook_p99_ms', value: p99, unit: 'ms', baseline: p99Alone, baselineName: 'same live traffic before the sync', target: 1_000, targetKind: 'max', note: `POST to row committed, 50 live webhooks/s (${rows.length} measured)` }),
  ];
}
