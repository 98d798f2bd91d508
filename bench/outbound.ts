// Outbound: 10,000 messages over 5 channels through the Graph API simulator (80 mps per
// number, pair rate on). How much of the allowed rate is used, whether any limit error is
// provoked, and the latency from POST /v1/messages to Meta accepting it and to `sent`
// while below the limit (20 msg/s); beside raw HTTP calls to the simulator at the same 20/s in
// the same run. Every latency is taken on this process's clock: the POST's send time, the
// simulator's accept time (it runs in this process), the `sent` row first visible to another
// connection (polled every 20 ms).
import http from 'node:http';
import { startGraphSimulator } from '../scripts/graph-sim/server.js';
import { sleep } from '../scripts/stack/proc.js';
import { result, type BenchResult } from './lib/results.js';
import { APP_SECRET, startRole, type BenchStack } from './lib/stack.js';

const CHANNELS = 5;
const MPS = 80;

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

export async function outboundBench(stack: BenchStack, total = 10_000): Promise<BenchResult[]> {
  const phoneIds = Array.from({ length: CHANNELS }, (_, i) => String(200000000000001 + i));
  const tokens = Object.fromEntries(phoneIds.map((p) => [p, `token-${p}`]));
  const sim = await startGraphSimulator({ tokens, config: { appSecret: APP_SECRET, messagesPerSecond: MPS, latencyMs: 5, jitterMs: 5, statusDelayMs: 1 } });
  const env = stack.serviceEnv({ QUEUE_PREFIX: 'bench-out', GRAPH_API_BASE_URL: sim.url, ...(process.env.BENCH_OUTBOUND_CONCURRENCY ? { OUTBOUND_CONCURRENCY: process.env.BENCH_OUTBOUND_CONCURRENCY } : {}), WHATSAPP_PHONE_NUMBER_ID: '', WHATSAPP_ACCESS_TOKEN: '' });
  const web = await startRole('web', env);
  sim.configure({ webhookUrl: `http://127.0.0.1:${web.port}/webhooks/whatsapp` });
  const base = `http://127.0.0.1:${web.port}`;
  const headers = { authorization: `Bearer ${env.API_TOKEN}`, 'content-type': 'application/json' };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 50 });
  const post = (path: string, body: unknown) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const data = JSON.stringify(body);
      const req = http.request(`${base}${path}`, { method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(data) } }, (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
      });
      req.on('error', reject);
      req.end(data);
    });
  const channelIds: number[] = [];
  for (const p of phoneIds) channelIds.push(JSON.parse((await post('/v1/channels', { phoneNumberId: p, accessToken: tokens[p], messagesPerSecond: MPS })).body).id);

  // Throughput: a backlog of 10,000 (distinct recipients; the pair rate is tested apart),
  // posted before the worker starts, so the figure is the sender's alone.
  const items = Array.from({ length: total }, (_, i) => ({ channelId: channelIds[i % CHANNELS]!, to: `5511${String(900000000 + i)}`, i }));
  const t0 = performance.now();
  let rejected = 0;
  await pool(items, 50, async (it) => {
    const r = await post('/v1/messages', { channelId: it.channelId, to: it.to, type: 'text', text: { body: `Pedido ${it.i} confirmado` } });
    if (r.status !== 202) rejected++;
  });
  const postSeconds = (performance.now() - t0) / 1000;
  const worker = await startRole('worker', env);
  const deadline = Date.now() + 180_000;
  while (sim.stats.accepted < total && Date.now() < deadline) await sleep(50);
  const seconds = (performance.now() - t0) / 1000;
  const accepted = sim.stats.accepted;
  // The sender's own rate: from the first message Meta accepted to the last, while a
  // backlog waited (the POSTs arrive faster than the allowed rate).
  const times = sim.sent.map((m) => m.at);
  const sendSeconds = (Math.max(...times) - Math.min(...times)) / 1000;
  const perChannel = accepted / CHANNELS / sendSeconds;
  if (process.env.BENCH_DEBUG) {
    const t0s = Math.min(...times);
    const hist: number[] = [];
    for (const t of times) hist[Math.floor((t - t0s) / 1000)] = (hist[Math.floor((t - t0s) / 1000)] ?? 0) + 1;
    console.log('  accepted per second:', hist.join(' '));
  }
  // Steady state for the latency test: the status webhooks of the burst are all stored.
  const drainDeadline = Date.now() + 120_000;
  for (;;) {
    const ready = (await (await fetch(`${base}/readyz`)).json()) as { queues: { inbound?: Record<string, number> } };
    const q = ready.queues.inbound ?? {};
    if ((q.waiting ?? 0) + (q.active ?? 0) + (q.delayed ?? 0) + (q.prioritized ?? 0) === 0 || Date.now() > drainDeadline) break;
    await sleep(200);
  }
  const limitErrors = (sim.stats.errors[130429] ?? 0) + (sim.stats.errors[131056] ?? 0);

  // Latency below the limit: 20 messages per second in all, spread over the channels. A message
  // never accepted or never `sent` counts as infinitely late.
  const before = sim.sent.length;
  const LATENCY_N = 200;
  const postedAt = new Map<string, number>();
  const sentSeen = new Map<string, number>();
  const watcher = await stack.pool.connect();
  let watching = true;
  const watch = (async () => {
    while (watching) {
      const pending = sim.sent.slice(before).map((m) => m.wamid).filter((w) => !sentSeen.has(w));
      if (pending.length > 0) {
        const { rows } = await watcher.query<{ wamid: string }>("SELECT wamid FROM message_statuses WHERE status = 'sent' AND wamid = ANY($1)", [pending]);
        const now = Date.now();
        for (const r of rows) sentSeen.set(r.wamid, now);
      }
      await sleep(20);
    }
  })();
  const answered: Promise<unknown>[] = [];
  for (let i = 0; i < LATENCY_N; i++) {
    const to = `5521${String(900000000 + i)}`;
    postedAt.set(to, Date.now());
    answered.push(post('/v1/messages', { channelId: channelIds[i % CHANNELS], to, type: 'text', text: { body: `latency ${i}` } }));
    await sleep(50);
  }
  await Promise.all(answered);
  const settleEnd = Date.now() + 5_000;
  while (Date.now() < settleEnd && sentSeen.size < LATENCY_N) await sleep(50);
  watching = false;
  await watch;
  watcher.release();
  const acceptedLat: number[] = [];
  const lat: number[] = [];
  for (const [to, at] of postedAt) {
    const m = sim.sent.slice(before).find((x) => x.to === to);
    acceptedLat.push(m?.answeredAt ? m.answeredAt - at : Number.POSITIVE_INFINITY);
    lat.push(m && sentSeen.has(m.wamid) ? sentSeen.get(m.wamid)! - at : Number.POSITIVE_INFINITY);
  }
  const acceptedP95 = percentile(acceptedLat, 95);
  const sentP95 = percentile(lat, 95);
  const latencyLost = lat.filter((x) => x === Number.POSITIVE_INFINITY).length;
  console.log(`  outbound: ${accepted} accepted ${seconds.toFixed(1)} s after the first POST (${Math.round(total / postSeconds)} POST/s), sent over ${sendSeconds.toFixed(1)} s = ${perChannel.toFixed(1)} mps per channel of ${MPS} (POSTs took ${postSeconds.toFixed(1)} s, ${rejected} refused, ${limitErrors} limit errors, ${sim.sent.length - before} latency sends); p95 POST→accepted ${acceptedP95.toFixed(1)} ms, POST→sent ${sentP95.toFixed(1)} ms (${LATENCY_N - latencyLost}/${LATENCY_N} with sent)`);
  agent.destroy();
  await worker.stop();
  await web.stop();

  // Baselines: raw keep-alive HTTP calls straight to the simulator, limits lifted: at the same
  // 20/s as the latency test (its p95 is the latency baseline), then 50 in flight (throughput).
  sim.configure({ messagesPerSecond: 1_000_000, pairBurst: 1_000_000, webhookUrl: '' });
  const rawCall = async (i: number) => {
    const res = await fetch(`${sim.url}/v23.0/${phoneIds[i % CHANNELS]}/messages`, { method: 'POST', headers: { authorization: `Bearer ${tokens[phoneIds[i % CHANNELS]!]}`, 'content-type': 'application/json' }, body: JSON.stringify({ messaging_product: 'whatsapp', to: `5531${900000000 + i}`, type: 'text', text: { body: 'raw' } }) });
    await res.arrayBuffer();
  };
  const pacedLat: Promise<number>[] = [];
  for (let i = 0; i < LATENCY_N; i++) {
    const s = Date.now();
    pacedLat.push(rawCall(i).then(() => Date.now() - s));
    await sleep(50);
  }
  const rawP95 = percentile(await Promise.all(pacedLat), 95);
  const rawN = 2_000;
  const rawT0 = performance.now();
  await pool(Array.from({ length: rawN }, (_, i) => i), 50, (i) => rawCall(LATENCY_N + i));
  const rawRate = rawN / ((performance.now() - rawT0) / 1000);
  await sim.close();
  console.log(`  outbound baseline: raw HTTP to the simulator at 20/s p95 ${rawP95.toFixed(1)} ms; 50 in flight ${Math.round(rawRate)}/s`);

  return [
    result({ name: 'outbound.rate_share_per_channel', value: accepted >= total && rejected === 0 ? perChannel / MPS : 0, unit: 'of 80 mps', baseline: null, target: 0.95, failed: accepted >= total && rejected === 0 ? undefined : `${total - accepted} not accepted, ${rejected} POSTs refused`, note: `a backlog of ${total} messages over ${CHANNELS} channels posted before the worker starts (1 web + 1 worker); first to last accepted by the simulator (5 ms latency, 5 ms jitter): ${perChannel.toFixed(1)} mps per channel` }),
    result({ name: 'outbound.posts_per_s', value: total / postSeconds, unit: 'req/s', baseline: null, target: null, note: 'POST /v1/messages, 50 in flight: validated, persisted and enqueued (no worker running)' }),
    result({ name: 'outbound.limit_errors', value: limitErrors, unit: 'errors', baseline: null, target: 0, targetKind: 'max', note: '130429 + 131056 answered by the simulator during the backlog' }),
    result({ name: 'outbound.p95_post_to_sent_ms', value: sentP95, unit: 'ms', baseline: rawP95, baselineName: 'raw HTTP call to the simulator at 20/s, p95', target: 100, targetKind: 'max', failed: latencyLost > 0 ? `${latencyLost} of ${LATENCY_N} never sent` : undefined, note: `${LATENCY_N} messages at 20/s below the limit, from the POST's send to the 'sent' status row visible to another connection (the simulator's webhook stored; polled every 20 ms); never sent counts as infinitely late` }),
    result({ name: 'outbound.p95_post_to_accepted_ms', value: acceptedP95, unit: 'ms', baseline: rawP95, baselineName: 'raw HTTP call to the simulator at 20/s, p95', target: null, note: `the same ${LATENCY_N} messages, from the POST's send to the simulator writing its answer to the Graph call (same clock; the baseline ends when that answer is read, so it also holds the wire back)` }),
    result({ name: 'outbound.raw_graph_calls_per_s', value: rawRate, unit: 'req/s', baseline: null, target: null, note: 'reference: keep-alive fetch straight to the simulator, 50 in flight, limits lifted' }),
  ];
}
