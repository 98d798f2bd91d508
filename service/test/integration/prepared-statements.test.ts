// DATABASE_PREPARED_STATEMENTS through a real PgBouncer in transaction mode. Off (the default, what
// CONTRACT's "no named prepared statements" promises): the inbox pages and the token check work
// through a PgBouncer that tracks no prepared statements, and no named statement reaches Postgres.
// On, with max_prepared_statements > 0 (what the presets deploy): the same pages work, run by name,
// on whichever server connection a transaction lands on; against a PgBouncer without it they fail,
// which is why it is opt-in.
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../../../scripts/stack/proc.js';
import { startPgBouncer, type PgBouncerHandle } from '../../../scripts/stack/pgbouncer.js';
import { API_TOKEN, createTestDb, PHONE_NUMBER_ID, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';

let db: TestDb;
const bouncers: PgBouncerHandle[] = [];
/** The shared test Postgres's log: only this file's database logs every statement (below). */
const pgLog = () => path.join(inject('stackDir'), 'postgres', 'postgres.log');
const CUSTOMERS = 6;
let started = 0;

function inbound(i: number): string {
  const from = `55119880000${i.toString().padStart(2, '0')}`;
  return JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
      messaging_product: 'whatsapp',
      metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID },
      contacts: [{ profile: { name: `Prepared ${i}` }, wa_id: from }],
      messages: [{ from, id: `wamid.PREP${Date.now().toString(36)}${i}`, timestamp: String(1_780_000_000 + i), type: 'text', text: { body: `hello ${i}` } }],
    } }] }],
  });
}

async function bouncer(maxPreparedStatements: number): Promise<PgBouncerHandle> {
  const u = new URL(db.url);
  const b = await startPgBouncer({
    dir: path.join(inject('stackDir'), `pgbouncer-${path.basename(u.pathname)}-${started++}`),
    port: await freePort(), dbPort: Number(u.port), user: decodeURIComponent(u.username), password: decodeURIComponent(u.password),
    database: u.pathname.slice(1), maxPreparedStatements,
  });
  bouncers.push(b);
  return b;
}

interface Round {
  readonly statuses: number[];
  /** Postgres's log of this file's database during the round. */
  readonly log: string;
}

/**
 * Many rounds of 20 concurrent requests (a scoped token's list pages with several filter mixes, the
 * messages page) from a web process connected through `b`: its 10 connections to PgBouncer meet its
 * server connections in ever new pairings, so a statement prepared on one runs later on another.
 */
async function round(b: PgBouncerHandle, prepared: boolean): Promise<Round> {
  const app: RunningApp = await startApp(db, 'web', { DATABASE_URL: b.url, DATABASE_PREPARED_STATEMENTS: String(prepared), DB_POOL_MAX: '10' });
  const offset = fs.statSync(pgLog()).size;
  try {
    const admin = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };
    const created = await fetch(`${app.url}/v1/tokens`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'prepared', scopes: ['conversations:read'] }) });
    expect(created.status).toBe(201);
    const token = (await json(created)).token as string;
    const list = await fetch(`${app.url}/v1/conversations?limit=50`, { headers: { authorization: `Bearer ${token}` } });
    expect(list.status).toBe(200);
    const conversationId = (await json(list)).data[0].id as number;
    const paths = ['/v1/conversations?limit=50', '/v1/conversations?limit=2&unread=true', '/v1/conversations?limit=3&status=open', `/v1/conversations/${conversationId}/messages?limit=50`];
    const statuses: number[] = [];
    for (let r = 0; r < 8; r++) {
      statuses.push(...await Promise.all(Array.from({ length: 20 }, async (_, i) => {
        const res = await fetch(`${app.url}${paths[i % paths.length]}`, { headers: { authorization: `Bearer ${token}` } });
        const body = await json(res);
        // Right answers, not only 200s: every customer on the first page.
        if (res.status === 200 && i % paths.length === 0) expect(body.data).toHaveLength(CUSTOMERS);
        return res.status;
      })));
    }
    await new Promise((r) => setTimeout(r, 300));
    return { statuses, log: fs.readFileSync(pgLog(), 'utf8').slice(offset) };
  } finally {
    await app.stop();
  }
}

/** Statements Postgres parsed, bound or executed under a name (the service's wa_…, or PgBouncer's own for them). */
const named = (log: string) => log.match(/duration: [\d.]+ ms {2}(?:parse|bind|execute) (?!<unnamed>)[^\s:/]+/g) ?? [];
const unnamedPages = (log: string) => log.match(/duration: [\d.]+ ms {2}execute <unnamed>: [\s\S]*?FROM \(SELECT c\.\* FROM conversations/g) ?? [];

beforeAll(async () => {
  db = await createTestDb();
  // Every statement of this database's sessions in the log (new sessions: PgBouncer's server connections).
  const admin = new pg.Client({ connectionString: inject('pgAdminUrl') });
  await admin.connect();
  await admin.query(`ALTER DATABASE ${path.basename(new URL(db.url).pathname)} SET log_min_duration_statement = 0`);
  await admin.end();
  const seeder = await startApp(db, 'all');
  try {
    for (let i = 0; i < CUSTOMERS; i++) expect((await postWebhook(seeder.url, inbound(i))).status).toBe(200);
    await eventually(async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM conversations')).rows[0]!.n === CUSTOMERS, { what: 'conversations' });
  } finally {
    await seeder.stop();
  }
}, 60_000);

afterAll(async () => {
  for (const b of bouncers) await b.stop();
  await db?.drop();
});

describe('DATABASE_PREPARED_STATEMENTS through PgBouncer in transaction mode', () => {
  it('off (default): pages work through a PgBouncer tracking no prepared statements, and no named statement is sent', async () => {
    const r = await round(await bouncer(0), false);
    expect(r.statuses.every((s) => s === 200), `statuses ${r.statuses.join(',')}`).toBe(true);
    expect(unnamedPages(r.log).length).toBeGreaterThan(0);
    expect(named(r.log)).toEqual([]);
  }, 90_000);

  it('on, with max_prepared_statements > 0: pages run by name on every server connection', async () => {
    const r = await round(await bouncer(200), true);
    expect(r.statuses.every((s) => s === 200), `statuses ${r.statuses.join(',')}`).toBe(true);
    expect(named(r.log).length).toBeGreaterThan(0);
  }, 90_000);

  it('on, against a PgBouncer with max_prepared_statements = 0: named statements miss their server connection (why it is opt-in)', async () => {
    const r = await round(await bouncer(0), true);
    expect(r.statuses.some((s) => s !== 200)).toBe(true);
    // A server connection that never saw the name, or one another client already prepared it on.
    expect(r.log).toMatch(/prepared statement "wa_[0-9a-f]+" (does not exist|already exists)/);
  }, 90_000);
});
