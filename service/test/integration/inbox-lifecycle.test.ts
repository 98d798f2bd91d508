// The inbox as an agent uses it: closing and assigning conversations (PATCH), a customer message
// reopening one, and the list's filters and search, each page by page through the API, against
// real Postgres and Redis; and every filter combination's plan served by indexes.
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { listConversations } from '../../src/store/conversations.js';
import { createPool, type Pool } from '../../src/store/pool.js';
import { API_TOKEN, createTestDb, PHONE_NUMBER_ID, testConfig, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { openSse } from '../helpers/events.js';

let db: TestDb;
let app: RunningApp;
const headers = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };
const api = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${app.url}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  return { status: res.status, body: res.status === 204 ? null : await json(res) };
};

let seq = 0;
const base = 1_780_000_000;
function inbound(from: string, name: string, at: number, username?: string): string {
  return JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
      messaging_product: 'whatsapp',
      metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID },
      contacts: [{ profile: { name, ...(username ? { username } : {}) }, wa_id: from }],
      messages: [{ from, id: `wamid.LIFE${Date.now().toString(36)}${(seq++).toString(36).padStart(4, '0')}`, timestamp: String(base + at), type: 'text', text: { body: `hi ${at}` } }],
    } }] }],
  });
}
const conversationOf = async (waId: string) => (await db.pool.query<{ id: number }>('SELECT cv.id FROM conversations cv JOIN contacts c ON c.id = cv.contact_id WHERE c.wa_id = $1', [waId])).rows[0]?.id;
async function write(from: string, name: string, at: number, username?: string): Promise<number> {
  const before = (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM messages')).rows[0]!.n;
  expect((await postWebhook(app.url, inbound(from, name, at, username))).status).toBe(200);
  await eventually(async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM messages')).rows[0]!.n > before, { what: `message from ${from}` });
  return (await conversationOf(from))!;
}

/** Waits until `n` web processes hold their events subscription: a stream's first event may otherwise be published before it. */
async function subscribed(prefix: string, n: number): Promise<void> {
  const redis = new Redis(inject('redisUrl'));
  try {
    await eventually(async () => ((await redis.pubsub('NUMSUB', `${prefix}:events`)) as [string, number])[1] >= n, { what: 'events subscriptions' });
  } finally {
    redis.disconnect();
  }
}

/** Every page of a listing, following nextCursor; ids in page order. */
async function allPages(query: string, limit = 2): Promise<number[]> {
  const ids: number[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 50; i++) {
    const r = await api('GET', `/v1/conversations?limit=${limit}${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    ids.push(...r.body.data.map((c: { id: number }) => c.id));
    cursor = r.body.nextCursor;
    if (!cursor) return ids;
  }
  throw new Error('too many pages');
}

beforeAll(async () => {
  db = await createTestDb();
  app = await startApp(db, 'all', { FORWARD_ALLOW_PRIVATE: 'true' });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

describe('conversation lifecycle', () => {
  it('PATCH closes and assigns, fires conversation.updated; a new customer message reopens, keeping the route', async () => {
    const id = await write('5511977000001', 'Lia Lifecycle', 1);
    const area = await api('POST', '/v1/areas', { name: 'Lifecycle', webhookUrl: 'http://127.0.0.1:9/hook' });
    expect((await api('POST', `/v1/conversations/${id}/assign`, { areaId: area.body.id })).status).toBe(200);
    expect((await api('GET', `/v1/conversations/${id}`)).body).toMatchObject({ status: 'open', assignee: null });

    const sse = openSse(app.url, `?access_token=${API_TOKEN}&types=conversation.updated`);
    expect((await sse.ready).status).toBe(200);
    await subscribed(app.app.config.QUEUE_PREFIX, 1);
    const closed = await api('PATCH', `/v1/conversations/${id}`, { status: 'closed', assignee: 'agent-7' });
    expect(closed.status).toBe(200);
    expect(closed.body).toMatchObject({ id, status: 'closed', assignee: 'agent-7', route: { state: 'assigned', areaId: area.body.id } });
    await eventually(async () => sse.events.find((e) => e.data.conversationId === id && e.data.status === 'closed' && e.data.assignee === 'agent-7'), { what: 'conversation.updated' });
    await sse.close();
    expect((await api('GET', '/v1/conversations?status=closed')).body.data.map((c: { id: number }) => c.id)).toEqual([id]);

    // assignee null clears it; status left out stays.
    expect((await api('PATCH', `/v1/conversations/${id}`, { assignee: null })).body).toMatchObject({ status: 'closed', assignee: null });
    expect((await api('PATCH', `/v1/conversations/${id}`, { assignee: 'agent-7' })).body).toMatchObject({ status: 'closed', assignee: 'agent-7' });

    await write('5511977000001', 'Lia Lifecycle', 2);
    const reopened = (await api('GET', `/v1/conversations/${id}`)).body;
    expect(reopened).toMatchObject({ status: 'open', assignee: 'agent-7', unreadCount: 2, route: { state: 'assigned', areaId: area.body.id } });
    expect(reopened.lastMessage.body).toBe('hi 2');
    expect((await api('GET', '/v1/conversations?status=closed')).body.data).toEqual([]);
  });

  it('refuses bad patches with the JSON error, and an unknown conversation with 404', async () => {
    const id = (await conversationOf('5511977000001'))!;
    for (const body of [{}, { status: 'archived' }, { assignee: '' }, { status: 'open', extra: 1 }]) {
      const r = await api('PATCH', `/v1/conversations/${id}`, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.code).toBe('invalid_request');
    }
    expect((await api('PATCH', '/v1/conversations/987654', { status: 'closed' })).status).toBe(404);
    expect((await api('GET', '/v1/conversations?status=archived')).body.error.code).toBe('invalid_query');
  });
});

describe('GET /v1/conversations filters', () => {
  // Twelve customers with known attributes; every filter and some combinations are checked
  // against the expected set, page by page (limit 2), in activity order.
  interface Row { id: number; waId: string; name: string; username?: string; status: 'open' | 'closed'; assignee: string | null; unread: boolean; area: 'A' | 'B' | null }
  const rows: Row[] = [];
  const areas: Record<'A' | 'B', number> = { A: 0, B: 0 };

  beforeAll(async () => {
    areas.A = (await api('POST', '/v1/areas', { name: 'Filters A', webhookUrl: 'http://127.0.0.1:9/a' })).body.id;
    areas.B = (await api('POST', '/v1/areas', { name: 'Filters B', webhookUrl: 'http://127.0.0.1:9/b' })).body.id;
    const names = ['Ana Souza', 'Bruno Lima', 'Carla Souza', 'Davi Rocha', 'Eva Mendes', 'Fábio Souza', 'Gil 100%_off', 'Hugo Lima', 'Iara Costa', 'João Souza', 'Kaio Reis', 'Lara Lima'];
    for (const [i, name] of names.entries()) {
      const waId = `55119880000${String(i).padStart(2, '0')}`;
      const username = i % 4 === 0 ? `user.${name.split(' ')[0]!.toLowerCase()}` : undefined;
      const id = await write(waId, name, 100 + i, username);
      const row: Row = { id, waId, name, ...(username ? { username } : {}), status: i % 3 === 0 ? 'closed' : 'open', assignee: i % 2 === 0 ? `agent-${i % 4}` : null, unread: i % 5 !== 0, area: i % 3 === 1 ? 'A' : i % 3 === 2 ? 'B' : null };
      rows.push(row);
      if (row.status === 'closed' || row.assignee) expect((await api('PATCH', `/v1/conversations/${id}`, { status: row.status, assignee: row.assignee })).status).toBe(200);
      if (!row.unread) expect((await api('POST', `/v1/conversations/${id}/read`)).status).toBe(200);
      if (row.area) expect((await api('POST', `/v1/conversations/${id}/assign`, { areaId: areas[row.area] })).status).toBe(200);
    }
  });

  const expected = (pred: (r: Row) => boolean) => rows.filter(pred).map((r) => r.id).reverse();
  const mine = async (query: string) => {
    const ids = await allPages(query);
    return ids.filter((id) => rows.some((r) => r.id === id));
  };

  it('each filter alone returns exactly the matching conversations across pages', async () => {
    expect(await mine('&status=closed')).toEqual(expected((r) => r.status === 'closed'));
    expect(await mine('&status=open')).toEqual(expected((r) => r.status === 'open'));
    expect(await mine('&assignee=agent-0')).toEqual(expected((r) => r.assignee === 'agent-0'));
    expect(await mine('&unread=true')).toEqual(expected((r) => r.unread));
    expect(await mine('&unread=false')).toEqual(expected((r) => !r.unread));
    expect(await allPages(`&areaId=${areas.A}`)).toEqual(expected((r) => r.area === 'A'));
    expect(await allPages('&q=souza')).toEqual(expected((r) => r.name.toLowerCase().includes('souza')));
    expect(await mine(`&channelId=${(await db.pool.query('SELECT id FROM channels')).rows[0].id}`)).toEqual(expected(() => true));
  });

  it('q matches the name, the number or the username, case-insensitive, with LIKE wildcards taken literally', async () => {
    expect(await allPages('&q=LIMA')).toEqual(expected((r) => r.name.includes('Lima')));
    expect(await allPages('&q=988000007')).toEqual(expected((r) => r.waId.includes('988000007')));
    expect(await allPages('&q=user.eva')).toEqual(expected((r) => r.username === 'user.eva'));
    expect(await allPages(`&q=${encodeURIComponent('100%_')}`)).toEqual(expected((r) => r.name.includes('100%_')));
    expect(await allPages(`&q=${encodeURIComponent('%')}`)).toEqual(expected((r) => r.name.includes('%')));
    expect(await allPages('&q=nobody-like-this')).toEqual([]);
  });

  it('q never matches text spanning two fields, and refuses control characters', async () => {
    // "a 55" spans "Souza" and "5511…"; "0 user" spans a number and "user.ana". No single field holds either.
    expect(await mine(`&q=${encodeURIComponent('a 55')}`)).toEqual([]);
    expect(await mine(`&q=${encodeURIComponent('00 user')}`)).toEqual([]);
    const r = await api('GET', `/v1/conversations?q=${encodeURIComponent('a\n55')}`);
    expect([r.status, r.body.error.code]).toEqual([400, 'invalid_query']);
  });

  it('filters combine', async () => {
    expect(await allPages('&q=souza&status=open')).toEqual(expected((r) => r.name.includes('Souza') && r.status === 'open'));
    expect(await allPages(`&q=lima&areaId=${areas.A}&unread=true`)).toEqual(expected((r) => r.name.includes('Lima') && r.area === 'A' && r.unread));
    expect(await mine('&status=open&assignee=agent-2&unread=true')).toEqual(expected((r) => r.status === 'open' && r.assignee === 'agent-2' && r.unread));
    expect(await allPages(`&areaId=${areas.B}&status=closed`)).toEqual(expected((r) => r.area === 'B' && r.status === 'closed'));
  });

  it('q follows the contact: a new profile name replaces the old, a first send to a new number is found by it', async () => {
    // Last in this block: these conversations match none of the searches above.
    const id = await write('5511977000001', 'Zeca Antigo', 300);
    expect(await allPages('&q=antigo')).toEqual([id]);
    await write('5511977000001', 'Zeca Novo', 301);
    expect(await allPages('&q=novo')).toEqual([id]);
    expect(await allPages('&q=antigo')).toEqual([]);
    // The contact and its conversation are written by one statement.
    expect((await api('POST', '/v1/messages', { to: '5511977000002', type: 'text', text: { body: 'hello' } })).status).toBe(202);
    const sent = await conversationOf('5511977000002');
    expect(sent).toBeDefined();
    expect(await allPages('&q=977000002')).toEqual([sent]);
  });
});

describe('every filter combination is served by indexes', () => {
  const FILTERS = ['status', 'assignee', 'unread', 'channelId', 'areaId', 'q'] as const;

  /** The plan of the exact statement the API runs for these filters. */
  async function plan(filter: Record<string, unknown>, cursor: { t: string; id: number } | null): Promise<{ scans: string[]; cursorInIndex: boolean; indexes: string[] }> {
    let captured: { sql: string; params: unknown[] } | undefined;
    // The store passes text and values, or a statement's config ({ name?, text, values }).
    const spy = {
      query: (q: string | { text: string; values: unknown[] }, params?: unknown[]) => {
        captured = typeof q === 'string' ? { sql: q, params: params ?? [] } : { sql: q.text, params: q.values };
        return db.pool.query(captured.sql, captured.params);
      },
    } as unknown as Pool;
    await listConversations(spy, { limit: 50, cursor, ...filter });
    const { rows } = await db.pool.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${captured!.sql}`, captured!.params);
    const scans: string[] = [];
    const indexes: string[] = [];
    let cursorInIndex = false;
    const walk = (n: Record<string, unknown>) => {
      if (n['Node Type'] === 'Seq Scan') scans.push(String(n['Relation Name']));
      if (typeof n['Index Name'] === 'string') indexes.push(n['Index Name']);
      if (n['Relation Name'] === 'conversations' && String(n['Index Cond'] ?? '').includes('ROW(')) cursorInIndex = true;
      for (const c of (n.Plans as Record<string, unknown>[] | undefined) ?? []) walk(c);
    };
    walk((rows[0]!['QUERY PLAN'] as { Plan: Record<string, unknown> }[])[0]!.Plan);
    return { scans, cursorInIndex, indexes };
  }

  it('has no sequential scan of conversations on 6,000 conversations, and a deep page starts at its cursor in the index', async () => {
    // A realistic spread: 3 channels, a tenth closed (a third was a coin toss between the status
    // index and walking the recency index for three rows per row kept, once rows grew wider), half assigned to one of 20 agents, a fifth
    // unread, 60% routed over 5 areas.
    await db.pool.query(`INSERT INTO channels (phone_number_id) SELECT 'plan' || g FROM generate_series(1, 2) g`);
    await db.pool.query(`INSERT INTO areas (name, webhook_url) SELECT 'plan ' || g, 'http://127.0.0.1:9/' || g FROM generate_series(1, 5) g`);
    await db.pool.query(`INSERT INTO contacts (wa_id, profile_name, username) SELECT '5521' || lpad(g::text, 9, '0'), 'Person ' || md5(g::text), CASE WHEN g % 7 = 0 THEN 'u' || g END FROM generate_series(1, 6000) g`);
    await db.pool.query(`
      INSERT INTO conversations (channel_id, contact_id, last_message_at, unread_count, status, assignee)
      SELECT (SELECT array_agg(id ORDER BY id) FROM channels)[1 + ct.id % 3], ct.id, now() - ct.id * interval '1 minute',
             CASE WHEN ct.id % 5 = 0 THEN 1 ELSE 0 END, CASE WHEN ct.id % 10 = 0 THEN 'closed' ELSE 'open' END,
             CASE WHEN ct.id % 2 = 0 THEN 'agent-' || (ct.id % 20) END
      FROM contacts ct WHERE ct.wa_id LIKE '5521%'`);
    await db.pool.query(`
      INSERT INTO conversation_routes (conversation_id, state, area_id, assigned_at, assigned_by)
      SELECT c.id, 'assigned', (SELECT array_agg(id ORDER BY id) FROM areas)[1 + c.id % 5], now(), 'api'
      FROM conversations c WHERE c.id % 5 < 3 ON CONFLICT DO NOTHING`);
    // A small channel: a value where its per-filter index beats reading the newest of all conversations.
    const { rows: [rare] } = await db.pool.query<{ id: number }>(`INSERT INTO channels (phone_number_id) VALUES ('plan-rare') RETURNING id`);
    await db.pool.query(`UPDATE conversations SET channel_id = $1 WHERE id % 60 = 0`, [rare!.id]);
    // What autovacuum does on a live table: fresh rows of a GIN index wait in its pending list,
    // which every search reads whole until a vacuum moves them into the index proper.
    await db.pool.query('VACUUM ANALYZE');
    const { rows: [one] } = await db.pool.query<{ channel_id: number; area_id: number }>(`SELECT c.channel_id, r.area_id FROM conversations c JOIN conversation_routes r ON r.conversation_id = c.id WHERE r.state = 'assigned' LIMIT 1`);
    const values = { status: 'open', assignee: 'agent-4', unread: true, channelId: one!.channel_id, areaId: one!.area_id, q: createHash('md5').update('42').digest('hex').slice(0, 10) } as const;
    const bad: string[] = [];
    // Each single filter is served by its own index (012): dropping one shows here.
    const own = { status: 'conversations_status_recent_idx', assignee: 'conversations_assignee_recent_idx', unread: 'conversations_unread_recent_idx', channelId: 'conversations_channel_recent_idx' } as const;
    const selective = { ...values, channelId: rare!.id, status: 'closed' };
    for (const [f, index] of Object.entries(own)) {
      const { indexes } = await plan({ [f]: selective[f as keyof typeof own] }, null);
      if (!indexes.includes(index)) bad.push(`{${f}}: served by ${indexes.join(', ') || 'no index'}, not ${index}`);
    }
    for (let mask = 0; mask < 1 << FILTERS.length; mask++) {
      const filter = Object.fromEntries(FILTERS.filter((_, i) => mask & (1 << i)).map((f) => [f, values[f]]));
      for (const cursor of [null, { t: new Date(Date.now() - 3000 * 60_000).toISOString(), id: 3000 }]) {
        const { scans, cursorInIndex } = await plan(filter, cursor);
        // A deep page starts at its cursor in the index, not by reading every row before it.
        if (cursor && mask === 0 && !cursorInIndex) bad.push('{} (cursor): the cursor is not an index condition');
        if (scans.includes('conversations')) bad.push(`${JSON.stringify(filter)}${cursor ? ' (cursor)' : ''}: ${scans.join(', ')}`);
      }
    }
    // A token limited to areas (areaIds), with every other filter, as its agents page their inbox.
    const { rows: twoAreas } = await db.pool.query<{ id: number }>('SELECT id FROM areas ORDER BY id LIMIT 2');
    const limited = { areaIds: twoAreas.map((a) => Number(a.id)) };
    for (let mask = 0; mask < 1 << FILTERS.length; mask++) {
      if (mask & (1 << FILTERS.indexOf('areaId'))) continue;
      const filter: Record<string, unknown> = { ...limited, ...Object.fromEntries(FILTERS.filter((_, i) => mask & (1 << i)).map((f) => [f, values[f]])) };
      for (const cursor of [null, { t: new Date(Date.now() - 3000 * 60_000).toISOString(), id: 3000 }]) {
        const { scans } = await plan(filter, cursor);
        if (scans.includes('conversations')) bad.push(`${JSON.stringify(filter)}${cursor ? ' (cursor)' : ''}: ${scans.join(', ')}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('with prepared statements, a page is planned once per connection, not on every request (on the 6,000 conversations above)', async () => {
    const pool = createPool(testConfig(db, { DATABASE_PREPARED_STATEMENTS: 'true', DB_POOL_MAX: '1' }), 'plan-once');
    try {
      const { rows: [some] } = await db.pool.query<{ channel_id: number }>('SELECT channel_id FROM conversations GROUP BY 1 ORDER BY count(*) DESC LIMIT 1');
      const { rows: areaRows } = await db.pool.query<{ id: number }>('SELECT id FROM areas ORDER BY id LIMIT 2');
      const cursor = { t: new Date(Date.now() - 3000 * 60_000).toISOString(), id: 3000 };
      const mixes = [{}, { cursor }, { unread: true }, { channelId: some!.channel_id }, { areaIds: areaRows.map((a) => Number(a.id)) }];
      for (let i = 0; i < 12; i++) for (const mix of mixes) await listConversations(pool, { limit: 50, cursor: null, ...mix });
      // One connection (DB_POOL_MAX 1): its prepared statements are the pages' own.
      const { rows } = await pool.query<{ statement: string; generic_plans: number; custom_plans: number }>("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements WHERE name LIKE 'wa\\_%'");
      expect(rows).toHaveLength(mixes.length);
      // Postgres plans the first five runs for their values, then keeps the generic plan when it costs no more.
      for (const r of rows) expect(r.generic_plans, r.statement).toBeGreaterThanOrEqual(7);
    } finally {
      await pool.end();
    }
  });
});
