// End to end: distinct signed webhooks posted at 50 connections to a web process, stored
// by ONE worker process; from the first POST to the last row committed. Baselines, in the same
// run, after a settle step, over as many connections as the worker's pool (DB_POOL_MAX): one-row
// INSERTs of the same rows (what a naive consumer does), and a COPY of them (the upper limit).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import pgCopy from 'pg-copy-streams';
import { result, type BenchResult } from './lib/results.js';
import { settle, startRole, type BenchStack } from './lib/stack.js';
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

/** The worker's Postgres connections (DB_POOL_MAX's default): the baselines get as many. */
const WORKER_CONNECTIONS = 10;

interface Row { wamid: string; body: string; raw: string; ts: number }

/** The message rows the run's webhooks carry, built before any baseline's clock starts. */
function rowsOf(total: number, size: number, prefix: string): Row[] {
  return Array.from({ length: total }, (_, i) => {
    const m = JSON.parse(textWebhook(i, { prefix, size })).entry[0].changes[0].value.messages[0];
    return { wamid: m.id, body: m.text.body, raw: JSON.stringify(m), ts: Number(m.timestamp) };
  });
}

/** Same columns, defaults and indexes as messages, without its foreign keys. */
async function likeMessages(stack: BenchStack, table: string): Promise<void> {
  await stack.pool.query(`DROP TABLE IF EXISTS ${table}`);
  await stack.pool.query(`CREATE TABLE ${table} (LIKE messages INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING INDEXES)`);
}

/** Baseline: autocommit one-row INSERTs of the run's rows; rows per second. */
async function oneRowInserts(stack: BenchStack, rows: Row[], maxSeconds: number): Promise<number> {
  await likeMessages(stack, 'bench_one_row');
  const pool = new pg.Pool({ connectionString: stack.postgres.url, max: WORKER_CONNECTIONS });
  await Promise.all(Array.from({ length: WORKER_CONNECTIONS }, async () => (await pool.connect()).release()));
  let next = 0;
  let done = 0;
  const deadline = Date.now() + maxSeconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: WORKER_CONNECTIONS }, async () => {
      while (next < rows.length && Date.now() < deadline) {
        const r = rows[next++]!;
        await pool.query(
          `INSERT INTO bench_one_row (wamid, channel_id, conversation_id, contact_id, direction, type, body, raw, wa_timestamp, status)
           VALUES ($1, 1, 1, 1, 'inbound', 'text', $2, $3, to_timestamp($4), 'received') ON CONFLICT (wamid) DO NOTHING`,
          [r.wamid, r.body, r.raw, r.ts],
        );
        done++;
      }
    }),
  );
  const rate = done / ((performance.now() - t0) / 1000);
  await pool.end();
  await stack.pool.query('DROP TABLE bench_one_row');
  return rate;
}

/** Upper-limit baseline: one COPY of the run's rows; rows per second. */
async function copyRows(stack: BenchStack, rows: Row[]): Promise<number> {
  await likeMessages(stack, 'bench_copy_rows');
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n');
  const lines = rows.map((r) => [r.wamid, '1', '1', '1', 'inbound', 'text', esc(r.body), esc(r.raw), new Date(r.ts * 1000).toISOString(), 'received'].join('\t') + '\n');
  const client = await stack.pool.connect();
  const t0 = performance.now();
  try {
    const stream = client.query(pgCopy.from('COPY bench_copy_rows (wamid, channel_id, conversation_id, contact_id, direction, type, body, raw, wa_timestamp, status) FROM STDIN'));
    await pipeline(Readable.from(function* () {
      for (let i = 0; i < lines.length; i += 1000) yield lines.slice(i, i + 1000).join('');
    }()), stream as unknown as Writable);
  } finally {
    client.release();
  }
  const rate = rows.length / ((performance.now() - t0) / 1000);
  await stack.pool.query('DROP TABLE bench_copy_rows');
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
  await settle(stack);
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

  const rows = rowsOf(total, size, 'ROWS');
  await settle(stack);
  const baseline = await oneRowInserts(stack, rows, 30);
  await settle(stack);
  const upper = await copyRows(stack, rows);
  const rate = stored / seconds;
  console.log(`  ${name} (${size}-byte bodies): ${stored}/${total} messages stored in ${seconds.toFixed(2)} s (${Math.round(rate)}/s; ${sent.requests} POSTs, ${sent.non200} not 200); one-row inserts ${Math.round(baseline)} rows/s, COPY ${Math.round(upper)} rows/s`);
  const ok = stored === total && sent.non200 === 0;
  const failed = ok ? undefined : `${total - stored} not stored, ${sent.non200} POSTs not 200`;
  const note = `${total} distinct ${size}-byte text webhooks sent by wrk at 50 connections to 1 web process, stored by 1 worker process (events, contacts, conversations, messages); first POST to last row committed. Baselines get the same message rows, built before their clock starts, into a table like messages without foreign keys, after VACUUM + CHECKPOINT`;
  return [
    result({ name, value: ok ? rate : 0, unit: 'msg/s', baseline, baselineName: `one-row INSERTs, ${WORKER_CONNECTIONS} conns`, target, failed, note }),
    result({ name: `${name}_vs_copy`, value: ok ? rate : 0, unit: 'msg/s', baseline: upper, baselineName: 'one COPY of the same rows (upper limit)', target: null, failed, note: `the same figure against the fastest way to put these rows in Postgres; ${note}` }),
  ];
}
