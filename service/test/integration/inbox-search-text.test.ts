// The conversation's copy of its contact's searched text (026), as the inbox's q= sees it: the
// same rows as ILIKE on the contact, no trigger work on the hot inbound path, a merge's moved
// conversation, and a conversation created while another transaction renames its contact.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_TOKEN, PHONE_NUMBER_ID, createTestDb, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';

let db: TestDb;
let app: RunningApp;
const auth = { authorization: `Bearer ${API_TOKEN}` };
let seq = 0;
function inbound(from: string, name: string): string {
  return JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
      messaging_product: 'whatsapp',
      metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID },
      contacts: [{ profile: { name }, wa_id: from }],
      messages: [{ from, id: `wamid.SRCH${Date.now().toString(36)}${(seq++).toString(36).padStart(4, '0')}`, timestamp: String(1_780_000_000 + seq), type: 'text', text: { body: `hi ${seq}` } }],
    } }] }],
  });
}
const count = async (sql: string, args: unknown[] = []) => (await db.pool.query<{ n: number }>(sql, args)).rows[0]!.n;
async function send(from: string, name: string): Promise<void> {
  const before = await count('SELECT count(*)::int AS n FROM messages');
  expect((await postWebhook(app.url, inbound(from, name))).status).toBe(200);
  await eventually(async () => (await count('SELECT count(*)::int AS n FROM messages')) > before, { what: `message from ${from}` });
}
async function search(q: string): Promise<number[]> {
  const ids: number[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 50; i++) {
    const res = await fetch(`${app.url}/v1/conversations?limit=100&q=${encodeURIComponent(q)}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { headers: auth });
    const body = await json(res);
    expect(res.status, JSON.stringify(body)).toBe(200);
    ids.push(...body.data.map((c: { id: number }) => c.id));
    cursor = body.nextCursor;
    if (!cursor) return ids.sort((a, b) => a - b);
  }
  throw new Error('too many pages');
}
async function channel(phoneNumberId: string): Promise<number> {
  await db.pool.query('INSERT INTO channels (phone_number_id) VALUES ($1) ON CONFLICT DO NOTHING', [phoneNumberId]);
  return (await db.pool.query<{ id: number }>('SELECT id::int AS id FROM channels WHERE phone_number_id = $1', [phoneNumberId])).rows[0]!.id;
}
const conversationsOf = async (waId: string) => (await db.pool.query<{ id: number }>(
  'SELECT cv.id::int AS id FROM conversations cv JOIN contacts c ON c.id = cv.contact_id WHERE c.wa_id = $1 ORDER BY 1', [waId])).rows.map((r) => r.id);
/** Until a backend of this database waits for a lock (the concurrent writer parked on it), 2 s at most: a writer that does not wait shows as a stale search. */
const parked = () => eventually(async () => (await count(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)) > 0, { timeoutMs: 2_000 }).catch(() => false);
// ensureConversations' two statements (coexistence-store.ts): a history import on a second number.
const ensureContact = (client: pg.Client, waId: string) =>
  client.query('INSERT INTO contacts (wa_id) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT (wa_id) DO NOTHING', [[waId]]);
const ensureConversation = (client: pg.Client, channelId: number, waId: string) =>
  client.query(`INSERT INTO conversations (channel_id, contact_id) SELECT $1, id FROM contacts WHERE wa_id = ANY($2::text[]) ORDER BY id
    ON CONFLICT (channel_id, contact_id) DO NOTHING`, [channelId, [waId]]);

beforeAll(async () => {
  db = await createTestDb();
  // Function call counts for every backend the app opens (superuser setting, read at connect).
  const dbName = new URL(db.url).pathname.slice(1);
  await db.pool.query(`ALTER DATABASE ${dbName} SET track_functions = 'all'`);
  app = await startApp(db, 'all');
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

describe('q= on the conversation\'s search text', () => {
  it('LIKE lower(q) on search_text returns the rows ILIKE on the contact returns, for case-folding corner cases', async () => {
    const names = ['İstanbul Işık', 'STRASSE Groß', 'ΟΔΥΣΣΕΥΣ Οδυσσεύς', 'ǅemal Ǆ', 'Kelvin \u212A', '100%_off \\x', 'ﬁnn FI', 'Σίσυφος σς', 'ŉ Ǉ ǈ'];
    const ch = await channel('search-eq');
    for (const [i, n] of names.entries()) {
      await db.pool.query(`WITH ct AS (INSERT INTO contacts (wa_id, profile_name, username) VALUES ($1, $2, $3) RETURNING id)
        INSERT INTO conversations (channel_id, contact_id, last_message_at) SELECT $4, id, now() FROM ct`,
      [`4470000000${i}`, n, i % 2 ? n.toUpperCase() : null, ch]);
    }
    const ilike = async (q: string) => (await db.pool.query<{ id: number }>(
      `SELECT cv.id::int AS id FROM conversations cv WHERE cv.contact_id IN (SELECT s.id FROM contacts s
         WHERE (coalesce(s.profile_name, '') || E'\\n' || s.wa_id || E'\\n' || coalesce(s.username, '')) ILIKE $1) ORDER BY 1`,
      [`%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`])).rows.map((r) => r.id);
    const probes = ['İ', 'i̇', 'i', 'ı', 'I', 'ß', 'SS', 'ss', 'ẞ', 'σ', 'ς', 'Σ', 'ΣΣ', 'ύς', 'ΎΣ', 'ǆ', 'ǅ', 'Ǆ', 'k', 'K', '\u212A', '%', '_', '\\', '100%', '%_', 'ﬁ', 'fi', 'FI', 'ŉ', 'ǉ', 'Ǉ', '44700', 'x'];
    const diffs: string[] = [];
    for (const q of probes) {
      const [a, b] = [await ilike(q), await search(q)];
      if (JSON.stringify(a) !== JSON.stringify(b)) diffs.push(`${q}: ILIKE ${JSON.stringify(a)} q= ${JSON.stringify(b)}`);
    }
    expect(diffs).toEqual([]);
  });

  it('repeat messages of a known conversation call no search-text trigger', async () => {
    await send('447711000001', 'Hot Path');
    // Backends flush function stats at most once a second when idle: the new conversation's call
    // is counted before the reset.
    const flush = () => new Promise((r) => setTimeout(r, 2_500));
    await flush();
    await db.pool.query('SELECT pg_stat_reset()');
    for (let i = 0; i < 10; i++) await send('447711000001', 'Hot Path');
    await flush();
    const calls = (await db.pool.query<{ funcname: string; calls: number }>(
      `SELECT funcname, calls::int AS calls FROM pg_stat_user_functions
       WHERE funcname IN ('conversation_search_text_from_contact', 'contact_search_text_to_conversations') AND calls > 0`)).rows;
    expect(calls).toEqual([]);
    expect(await search('hot path')).toEqual(await conversationsOf('447711000001'));
  });

  it('a conversation moved to another contact whose fields stay the same (a merge) is found by that contact\'s name only', async () => {
    const ch = await channel('search-move');
    const { rows: [a, b] } = await db.pool.query<{ id: number }>(
      `INSERT INTO contacts (wa_id, profile_name) VALUES ('447733000001', 'Ottilie Moved'), ('447733000002', 'Bartholomew Kept') RETURNING id::int AS id`);
    const { rows: [cv] } = await db.pool.query<{ id: number }>('INSERT INTO conversations (channel_id, contact_id) VALUES ($1, $2) RETURNING id::int AS id', [ch, a!.id]);
    expect(await search('ottilie')).toEqual([cv!.id]);
    // As mergeEarlyContact moves a conversation: contact_id alone, the kept contact untouched.
    await db.pool.query('UPDATE conversations SET contact_id = $1, updated_at = now() WHERE id = $2', [b!.id, cv!.id]);
    expect(await search('ottilie')).toEqual([]);
    expect(await search('bartholomew')).toEqual([cv!.id]);
  });
});

describe('a conversation created while its contact is renamed', () => {
  it('a history import committing after a live webhook\'s rename waits for it: q=name finds both numbers\' conversations', async () => {
    const who = '447722000001';
    await db.pool.query('INSERT INTO contacts (wa_id) VALUES ($1)', [who]);
    const hist = await channel('search-hist-1');
    const t1 = new pg.Client({ connectionString: db.url });
    await t1.connect();
    try {
      await t1.query('BEGIN');
      await ensureContact(t1, who);
      await ensureConversation(t1, hist, who);
      // Meanwhile the customer writes to the first number, with a profile name: its rename waits
      // for the import's conversation to commit, then rewrites it too.
      const named = send(who, 'Zoraide Quintanilha');
      await parked();
      await t1.query('COMMIT');
      await named;
    } finally {
      await t1.end();
    }
    const all = await conversationsOf(who);
    expect(all).toHaveLength(2);
    expect(await search('quintanilha')).toEqual(all);
  });

  it('a history import creating the conversation during an uncommitted rename copies the new name', async () => {
    const who = '447722000002';
    await db.pool.query('INSERT INTO contacts (wa_id) VALUES ($1)', [who]);
    const hist = await channel('search-hist-2');
    const [t1, t2] = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
    await Promise.all([t1.connect(), t2.connect()]);
    try {
      await t1.query('BEGIN');
      await ensureContact(t1, who);
      await t2.query('BEGIN');
      await t2.query(`UPDATE contacts SET profile_name = 'Evaristo Pellegrini' WHERE wa_id = $1`, [who]);
      const imported = ensureConversation(t1, hist, who);
      await parked();
      await t2.query('COMMIT');
      await imported;
      await t1.query('COMMIT');
    } finally {
      await Promise.all([t1.end(), t2.end()]);
    }
    expect(await search('pellegrini')).toEqual(await conversationsOf(who));
  });
});
