// What storing one inbound message costs Postgres, A/B beside another build of the service in the
// same run: `npx tsx bench/store-cost.ts [<other service dist>]` (default: this tree's dist alone).
// Each build gets its own database, migrated by its own migrations and filled to a realistic size
// (20,000 conversations, 100,000 messages and raw events), then stores the same webhooks through
// its own storeInboundBatch, in batches of 10 events, two batches at once (the coalescer's
// default), in alternating rounds. Reported per message: statements, write transactions, WAL bytes
// (and full-page images, with STORE_COST_FPW=on), buffers touched and dirtied, Postgres CPU and
// execution time, the client's CPU; and the batch's latency. (pg_stat_user_tables' HOT counts are
// left out: backends report them up to seconds late, so a round's counts were partial.)
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startPostgres } from '../scripts/stack/postgres.js';
import { freePort } from '../scripts/stack/proc.js';
import { localTuning } from '../scripts/stack/tuning.js';
import { postgresCpuSeconds } from './lib/cost.js';
import { textWebhook } from './lib/payloads.js';
import { PHONE_NUMBER_ID, ROOT } from './lib/stack.js';

const CONVERSATIONS = 20_000;
const MESSAGES = 100_000;
const ROUND = Number(process.env.STORE_COST_ROUND ?? 1_500);
const ROUNDS = Number(process.env.STORE_COST_ROUNDS ?? 2);
const BATCH = 10;
/** Contacts the timed webhooks come from (the router bench's 200), among the filled ones. */
const ACTIVE = 200;

interface Variant {
  readonly name: string;
  readonly dist: string;
  db?: string;
  pool?: pg.Pool;
  store?: (pool: pg.Pool, events: unknown[], channels: ReadonlyMap<string, number>) => Promise<unknown>;
  parse?: (body: unknown) => unknown;
  channelId?: number;
  totals: Record<string, number>;
  latencies: number[];
}

const variants: Variant[] = [{ name: 'this tree', dist: path.join(ROOT, 'service', 'dist'), totals: {}, latencies: [] }];
if (process.argv[2]) variants.unshift({ name: path.basename(process.argv[2]), dist: path.resolve(process.argv[2]), totals: {}, latencies: [] });

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-router-store-cost-'));
fs.chmodSync(dir, 0o755);
const tuning = await localTuning();
const postgres = await startPostgres({
  dir: path.join(dir, 'postgres'), port: await freePort(), password: 'store-cost-pw',
  conf: `${tuning.postgres}\nshared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\nfsync = off\nsynchronous_commit = off\nfull_page_writes = ${process.env.STORE_COST_FPW ?? 'off'}`,
});
const admin = new pg.Pool({ connectionString: postgres.url, max: 2 });
// Idle connections die when Postgres stops at the end.
admin.on('error', () => undefined);

const percentile = (values: number[], p: number) => {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
};

try {
  await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  for (const [i, v] of variants.entries()) {
    const db = `store_cost_${i}`;
    v.db = db;
    await admin.query(`CREATE DATABASE ${db}`);
    v.pool = new pg.Pool({ connectionString: postgres.url.replace(/\/[^/]+$/, `/${db}`), max: 4 });
    v.pool.on('error', () => undefined);
    const { migrate } = (await import(path.join(v.dist, 'store', 'migrate.js'))) as { migrate: (p: pg.Pool) => Promise<string[]> };
    await migrate(v.pool);
    v.store = ((await import(path.join(v.dist, 'store', 'inbound-store.js'))) as { storeInboundBatch: Variant['store'] }).storeInboundBatch;
    v.parse = ((await import(path.join(v.dist, 'whatsapp', 'parse.js'))) as { parseEvent: Variant['parse'] }).parseEvent;
    v.channelId = Number((await v.pool.query("INSERT INTO channels (phone_number_id, name) VALUES ($1, 'store-cost') RETURNING id", [PHONE_NUMBER_ID])).rows[0].id);
    const t0 = performance.now();
    // The same contact keys and names as textWebhook's, so the timed webhooks meet existing rows.
    await v.pool.query(
      `INSERT INTO contacts (wa_id, profile_name, user_id)
       SELECT '5511' || lpad(g::text, 9, '0'), 'Customer ' || g, 'BR.' || (7000000000000 + g) FROM generate_series(0, $1 - 1) g`, [CONVERSATIONS]);
    await v.pool.query('INSERT INTO conversations (channel_id, contact_id) SELECT $1, id FROM contacts ORDER BY id', [v.channelId]);
    const body = textWebhook(0);
    await v.pool.query(
      `INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, source, type, body, raw, wa_timestamp, status, routed)
       SELECT 'wamid.FILL' || g, $1, c.id, c.contact_id, 'inbound', 'live', 'text', 'filler text of a realistic length, about sixty characters',
              ($3::jsonb)->'entry'->0->'changes'->0->'value'->'messages'->0, now() - interval '30 days' + g * interval '1 second', 'received', true
       FROM generate_series(1, $2) g JOIN conversations c ON c.id = 1 + g % ${CONVERSATIONS}`, [v.channelId, MESSAGES, body]);
    await v.pool.query(
      `INSERT INTO inbound_events (body_sha256, received_at, fields, phone_number_ids, payload)
       SELECT sha256(('fill' || g)::bytea), now() - interval '30 days' + g * interval '1 second', '{messages}', ARRAY[$1], $2::json FROM generate_series(1, $3) g`,
      [PHONE_NUMBER_ID, body, MESSAGES]);
    await v.pool.query(
      `UPDATE conversations c SET last_message_id = l.id, last_message_at = l.wa_timestamp, last_inbound_at = l.wa_timestamp, unread_count = l.n
       FROM (SELECT DISTINCT ON (conversation_id) conversation_id, id, wa_timestamp, count(*) OVER (PARTITION BY conversation_id) AS n
             FROM messages ORDER BY conversation_id, wa_timestamp DESC) l WHERE l.conversation_id = c.id`);
    await v.pool.query('VACUUM ANALYZE');
    console.log(`${v.name}: filled in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  await admin.query('CHECKPOINT');

  let seq = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const v of variants) {
      const start = seq;
      const bodies = Array.from({ length: ROUND }, (_, k) => textWebhook(start + k, { contacts: ACTIVE, prefix: `SC${round}` }));
      const records = bodies.map((raw) => ({ sha256: createHash('sha256').update(raw).digest(), receivedAt: new Date(), raw, parsed: v.parse!(JSON.parse(raw)) }));
      const channels = new Map([[PHONE_NUMBER_ID, v.channelId!]]);
      await admin.query('SELECT pg_stat_statements_reset()');
      await admin.query('SELECT pg_stat_force_next_flush()').catch(() => undefined);
      const { rows: [l0] } = await v.pool!.query<{ lsn: string; xid: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn, pg_snapshot_xmax(pg_current_snapshot())::text AS xid');
      const pgCpu0 = postgresCpuSeconds(postgres.dataDir);
      const cpu0 = process.cpuUsage();
      let next = 0;
      const lane = async () => {
        while (next < records.length) {
          const batch = records.slice(next, next + BATCH);
          next += BATCH;
          const t = performance.now();
          await v.store!(v.pool!, batch, channels);
          v.latencies.push(performance.now() - t);
        }
      };
      await Promise.all([lane(), lane()]);
      const cpu = process.cpuUsage(cpu0);
      const pgCpu = postgresCpuSeconds(postgres.dataDir) - pgCpu0;
      const { rows: [l1] } = await v.pool!.query<{ wal: string; xid: string }>('SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1)::text AS wal, pg_snapshot_xmax(pg_current_snapshot())::text AS xid', [l0!.lsn]);
      const { rows: [st] } = await admin.query<Record<string, string>>(
        `SELECT sum(calls)::text AS statements, sum(total_exec_time)::text AS exec_ms, sum(shared_blks_hit + shared_blks_read)::text AS buffers,
                sum(shared_blks_dirtied)::text AS dirtied, sum(wal_fpi)::text AS fpi
         FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) AND query NOT LIKE '%pg_stat%' AND query NOT LIKE '%pg_current%'`, [v.db]);
      const { rows: top } = await admin.query<{ query: string; calls: string; buffers: string; dirtied: string; wal: string; ms: number }>(
        `SELECT query, calls::text, (shared_blks_hit + shared_blks_read)::text AS buffers, shared_blks_dirtied::text AS dirtied, wal_bytes::text AS wal, total_exec_time AS ms
         FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) AND query NOT LIKE '%pg_stat%' AND query NOT LIKE '%pg_current%'
         ORDER BY shared_blks_hit + shared_blks_read DESC LIMIT 8`, [v.db]);
      if (process.env.STORE_COST_STATEMENTS === '1') {
        console.log(`${v.name}, round ${round + 1}: statements per message (calls, buffers, dirtied, WAL bytes, exec µs)`);
        for (const t of top) console.log(`  ${[Number(t.calls) / ROUND, Number(t.buffers) / ROUND, Number(t.dirtied) / ROUND, Number(t.wal) / ROUND, (t.ms * 1000) / ROUND].map((x) => x.toFixed(2).padStart(9)).join('')}  ${t.query.replace(/\s+/g, ' ').slice(0, 80)}`);
      }
      const add = (k: string, x: number) => (v.totals[k] = (v.totals[k] ?? 0) + x);
      add('messages', ROUND);
      add('statements', Number(st!.statements));
      add('write transactions', Number(l1!.xid) - Number(l0!.xid) - 1);
      add('WAL bytes', Number(l1!.wal));
      add('WAL full-page images', Number(st!.fpi));
      add('buffers touched', Number(st!.buffers));
      add('buffers dirtied', Number(st!.dirtied));
      add('Postgres exec ms', Number(st!.exec_ms));
      add('Postgres CPU ms', pgCpu * 1000);
      add('client CPU ms', (cpu.user + cpu.system) / 1000);
      seq += ROUND;
    }
    await admin.query('CHECKPOINT');
  }
  if (process.env.STORE_COST_EXPLAIN === '1') {
    // One more batch per build with every statement's plan, buffers and triggers in the server log.
    const log = path.join(dir, 'postgres', 'postgres.log');
    for (const v of variants) {
      const explained = new pg.Pool({ connectionString: postgres.url.replace(/\/[^/]+$/, `/${v.db}`), max: 1 });
      explained.on('connect', (c) => void c.query("LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; SET auto_explain.log_wal = on; SET auto_explain.log_triggers = on; SET auto_explain.log_nested_statements = on"));
      const from = fs.statSync(log).size;
      const raws = Array.from({ length: BATCH }, (_, k) => textWebhook(seq + k, { contacts: ACTIVE, prefix: 'SCX' }));
      await explained.query('SELECT 1');
      await v.store!(explained, raws.map((raw) => ({ sha256: createHash('sha256').update(raw).digest(), receivedAt: new Date(), raw, parsed: v.parse!(JSON.parse(raw)) })), new Map([[PHONE_NUMBER_ID, v.channelId!]]));
      seq += BATCH;
      await explained.end();
      const fd = fs.openSync(log, 'r');
      const buf = Buffer.alloc(fs.statSync(log).size - from);
      fs.readSync(fd, buf, 0, buf.length, from);
      fs.closeSync(fd);
      fs.writeFileSync(path.join(os.tmpdir(), `store-cost-explain-${v.db}.log`), buf);
      console.log(`${v.name}: plans in ${path.join(os.tmpdir(), `store-cost-explain-${v.db}.log`)}`);
    }
  }
  const keys = Object.keys(variants[0]!.totals).filter((k) => k !== 'messages');
  console.log(`per message (${ROUNDS} × ${ROUND} messages each, batches of ${BATCH}, 2 at once; load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')})`);
  console.log(['', ...variants.map((v) => v.name), variants.length > 1 ? 'ratio' : ''].map((s) => s.padStart(16)).join(''));
  for (const k of keys) {
    const vals = variants.map((v) => v.totals[k]! / v.totals.messages!);
    console.log([k.padEnd(26), ...vals.map((x) => x.toFixed(3).padStart(14))].join('  ') + (vals.length > 1 ? `  ${(vals[1]! / vals[0]!).toFixed(2).padStart(8)}` : ''));
  }
  for (const v of variants) console.log(`${v.name}: batch of ${BATCH} p50 ${percentile(v.latencies, 50).toFixed(1)} ms, p95 ${percentile(v.latencies, 95).toFixed(1)} ms`);
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  for (const v of variants) await v.pool?.end();
  await admin.end();
  await postgres.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
