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

  // Live traffic: 50 webhooks/s, each timed from its POST to its row being visible to another
  // connection (committed), polled every 20 ms; 3 s alone first (the baseline), then on through
  // the sync. A POST not answered 200 or a row that never appears counts as infinitely late.
  const liveSent = new Map<string, number>();
  const liveSeen = new Map<string, number>();
  const liveFailed = new Set<string>();
  const liveBefore = new Set<string>();
  let liveOn = true;
  let syncing = false;
  const answers: Promise<void>[] = [];
  const live = (async () => {
    for (let i = 0; liveOn && i < 10_000; i++) {
      const body = textWebhook(i, { prefix: 'LIVEH', size: 640 });
      const wamid = `wamid.LIVEH${String(i).padStart(10, '0')}`;
      liveSent.set(wamid, Date.now());
      if (!syncing) liveBefore.add(wamid);
      answers.push(post(body).then((status) => void (status !== 200 && liveFailed.add(wamid)), () => void liveFailed.add(wamid)));
      await sleep(20);
    }
  })();
  const watcher = await stack.pool.connect();
  let watching = true;
  const watch = (async () => {
    while (watching) {
      const pending = [...liveSent.keys()].filter((w) => !liveSeen.has(w));
      if (pending.length > 0) {
        const { rows } = await watcher.query<{ wamid: string }>('SELECT wamid FROM messages WHERE wamid = ANY($1)', [pending]);
        const now = Date.now();
        for (const r of rows) liveSeen.set(r.wamid, now);
      }
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
  await Promise.all(answers);
  // Grace for the last ones; what is still not visible then never arrived.
  const graceEnd = Date.now() + 5_000;
  while (Date.now() < graceEnd && liveSeen.size < liveSent.size) await sleep(50);
  watching = false;
  await watch;
  watcher.release();
  const p99Of = (wamids: string[]) => {
    const l = wamids.map((w) => (liveFailed.has(w) || !liveSeen.has(w) ? Number.POSITIVE_INFINITY : liveSeen.get(w)! - liveSent.get(w)!)).sort((a, b) => a - b);
    return l[Math.min(l.length - 1, Math.floor(l.length * 0.99))] ?? Number.NaN;
  };
  const p99 = p99Of([...liveSent.keys()].filter((w) => !liveBefore.has(w)));
  const p99Alone = p99Of([...liveBefore]);
  const liveLost = [...liveSent.keys()].filter((w) => liveFailed.has(w) || !liveSeen.has(w)).length;
  await worker.stop();
  await web.stop();

  const copySeconds = await copyBaseline(stack, chunks);
  console.log(`  history: ${stored}/${total} messages in ${seconds.toFixed(2)} s (all ${chunks.length} chunks posted after ${postedSeconds.toFixed(2)} s, ${non200} not 200); live webhooks: ${liveSent.size - liveLost}/${liveSent.size} answered 200 and visible, p99 ${p99} ms to the row during the sync, ${p99Alone} ms before it; bare COPY of the same rows ${copySeconds.toFixed(2)} s`);
  const ok = stored === total && non200 === 0;
  return [
    result({ name: 'history.sync_50k_seconds', value: ok ? seconds : Number.POSITIVE_INFINITY, unit: 's', baseline: copySeconds, baselineName: 'bare COPY of the same rows', target: 10, targetKind: 'max', failed: ok ? undefined : `${total - stored} not stored, ${non200} chunks not 200`, note: `${total} messages, 500 conversations, ${chunks.length} chunk webhooks posted 8 at a time, 1 web + 1 worker process (HISTORY_CONCURRENCY=2), first POST until the sync run's counter (moved in each chunk's transaction) reaches ${total}; baseline: one COPY of the same rows into a table like messages without foreign keys (no contacts, conversations or counters)` }),
    result({ name: 'history.live_webhook_p99_ms', value: p99, unit: 'ms', baseline: p99Alone, baselineName: 'same live traffic before the sync', target: 1_000, targetKind: 'max', failed: liveLost > 0 ? `${liveLost} live webhooks not answered 200 or never visible` : undefined, note: `50 live 640-byte webhooks/s, each from its POST to its row visible to another connection (committed; polled every 20 ms, so up to ~20 ms late); ${liveSent.size} sent, a failed POST or a row never visible counts as infinitely late` }),
  ];
}
