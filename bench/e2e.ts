// End to end: distinct signed webhooks posted at 50 connections to a web process, stored
// by ONE worker process; from the first POST to the last row committed. Baseline: one-row
// INSERTs of the same rows into the same Postgres, in the same run.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { result, type BenchResult } from './lib/results.js';
import { startRole, type BenchStack } from './lib/stack.js';
import { signature, textWebhook } from './lib/payloads.js';
import { sleep } from '../scripts/stack/proc.js';

const SCRIPT = fileURLToPath(new URL('./lib/wrk-bodies.lua', import.meta.url));

/** Sends every body once with wrk (cheap on CPU); returns a stop function and its summary. */
function sendWithWrk(port: number, bodiesFile: string): { finished: Promise<{ requests: number; non200: number }>; stop(): void } {
  const threads = 2;
  const child = spawn('wrk', ['-t', String(threads), '-c', '50', '-d', '600s', '--timeout', '10s', '-s', SCRIPT, `http://127.0.0.1:${port}/webhooks/whatsapp`], {
    env: { ...process.env, WRK_THREADS: String(threads), WRK_BODIES_FILE: bodiesFile },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const finished = new Promise<{ requests: number; non200: number }>((resolve, reject) => {
    child.once('exit', () => {
      const line = err.split('\n').find((l) => l.startsWith('WRK_JSON '));
      if (!line) reject(new Error(`wrk printed no summary: ${err}`));
      else resolve(JSON.parse(line.slice(9)) as { requests: number; non200: number });
    });
  });
  return { finished, stop: () => child.kill('SIGINT') };
}

/** Baseline: autocommit one-row INSERTs of message-shaped rows, 8 connections in parallel. */
async function oneRowInserts(stack: BenchStack, rows: number, maxSeconds: number): Promise<number> {
  // Same columns, defaults and indexes as messages, without its foreign keys.
  await stack.pool.query('CREATE TABLE bench_one_row (LIKE messages INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING INDEXES)');
  let next = 0;
  const deadline = Date.now() + maxSeconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < rows && Date.now() < deadline) {
        const i = next++;
        const body = JSON.parse(textWebhook(i, { prefix: 'ONEROW' })).entry[0].changes[0].value.messages[0];
        await stack.pool.query(
          `INSERT INTO bench_one_row (wamid, channel_id, conversation_id, contact_id, direction, type, body, raw, wa_timestamp, status)
           VALUES ($1, 1, 1, 1, 'inbound', 'text', $2, $3, to_timestamp($4), 'received') ON CONFLICT (wamid) DO NOTHING`,
          [body.id, body.text.body, body, Number(body.timestamp)],
        );
      }
    }),
  );
  const done = Math.min(next, rows);
  const rate = done / ((performance.now() - t0) / 1000);
  await stack.pool.query('DROP TABLE bench_one_row');
  return rate;
}

export async function e2eBench(stack: BenchStack, total: number, size: number, name = 'e2e.messages_per_s', target: number | null = 5_000): Promise<BenchResult[]> {
  const bodiesFile = path.join(stack.dir, 'e2e-bodies.tsv');
  fs.writeFileSync(bodiesFile, Array.from({ length: total }, (_, i) => {
    const body = textWebhook(i, { prefix: 'E2E', size });
    return `${signature(body)}\t${body}`;
  }).join('\n') + '\n');
  await stack.pool.query("DELETE FROM messages WHERE wamid LIKE 'wamid.E2E%'");
  await stack.pool.query('DELETE FROM inbound_events');
  const env = stack.serviceEnv({ QUEUE_PREFIX: `bench-e2e-${size}` });
  const web = await startRole('web', env);
  const worker = await startRole('worker', env);
  const count = async () => Number((await stack.pool.query("SELECT count(*) AS n FROM messages WHERE wamid LIKE 'wamid.E2E%'")).rows[0].n);

  const t0 = performance.now();
  const load = sendWithWrk(web.port, bodiesFile);
  const deadline = Date.now() + Number(process.env.BENCH_E2E_TIMEOUT_S ?? 120) * 1000;
  let stored = 0;
  while (Date.now() < deadline && (stored = await count()) < total) await sleep(20);
  const seconds = (performance.now() - t0) / 1000;
  load.stop();
  const sent = await load.finished;
  if (stored < total) {
    const { rows } = await stack.pool.query(
      "SELECT 'wamid.E2E' || lpad(i::text, 10, '0') AS wamid FROM generate_series(0, $1 - 1) i EXCEPT SELECT wamid FROM messages ORDER BY 1 LIMIT 10",
      [total],
    );
    console.log(`  e2e: missing ${rows.map((r) => r.wamid).join(', ')}`);
  }
  await worker.stop();
  await web.stop();

  const baseline = await oneRowInserts(stack, 20_000, 10);
  const rate = stored / seconds;
  console.log(`  ${name} (${size}-byte bodies): ${stored}/${total} messages stored in ${seconds.toFixed(2)} s (${Math.round(rate)}/s; ${sent.requests} POSTs, ${sent.non200} not 200); one-row inserts ${Math.round(baseline)} rows/s`);
  return [
    result({ name, value: stored === total && sent.non200 === 0 ? rate : 0, unit: 'msg/s', baseline, baselineName: 'one-row INSERTs, 8 conns', target, note: `${total} distinct ${size}-byte text webhooks at 50 connections, 1 web + 1 worker process, first POST to last row committed` }),
  ];
}
