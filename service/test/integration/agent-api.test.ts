// The agent API against real Postgres and Redis and the Graph API simulator: the inbox by latest
// activity, a conversation's messages, marking read (with Meta's read receipt), realtime events
// over SSE and WebSocket.
import fs from 'node:fs';
import net from 'node:net';
import { Redis } from 'ioredis';
import { describe, expect, inject, it } from 'vitest';
import WebSocket from 'ws';
import { envelope, historyChange, historyThread } from '../fixtures/payloads.js';
import { API_TOKEN, PHONE_NUMBER_ID } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp } from '../helpers/app.js';
import { openSse as openSseAt } from '../helpers/events.js';
import { auth, senderForFile } from '../helpers/sender.js';

const stack = senderForFile({ latencyMs: 2, jitterMs: 2, statusDelayMs: 10 });
const get = async (path: string) => {
  const res = await fetch(`${stack.app.url}${path}`, { headers: auth });
  return { status: res.status, body: await json(res) };
};

let seq = 0;
const wamid = () => `wamid.AGENT${Date.now().toString(36)}${(seq++).toString(36).padStart(4, '0')}`;
const base = 1_780_000_000;
function inbound(from: string, at: number, id = wamid(), body = `hello at ${at}`): string {
  return JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
      messaging_product: 'whatsapp',
      metadata: { display_phone_number: '15550001111', phone_number_id: PHONE_NUMBER_ID },
      contacts: [{ profile: { name: `Customer ${from.slice(-3)}` }, wa_id: from }],
      messages: [{ from, id, timestamp: String(base + at), type: 'text', text: { body } }],
    } }] }],
  });
}
const conversationOf = async (waId: string) => (await stack.db.pool.query('SELECT cv.id FROM conversations cv JOIN contacts c ON c.id = cv.contact_id WHERE c.wa_id = $1', [waId])).rows[0]?.id as number | undefined;

const openSse = (query: string) => openSseAt(stack.app.url, query);

describe('GET /v1/conversations', () => {
  it('pages the inbox newest activity first, with contact, last message and unread count, without gaps or repeats', async () => {
    const people = ['5511900000101', '5511900000102', '5511900000103', '5511900000104', '5511900000105'];
    // Activity order (oldest → newest): 101, 102, 103, 104, 105; 102 writes twice, last of all.
    for (const [i, p] of people.entries()) expect((await postWebhook(stack.app.url, inbound(p, 10 + i))).status).toBe(200);
    expect((await postWebhook(stack.app.url, inbound('5511900000102', 100, wamid(), 'newest'))).status).toBe(200);
    await eventually(async () => (await stack.db.pool.query("SELECT count(*)::int AS n FROM messages WHERE body LIKE 'hello at %' OR body = 'newest'")).rows[0].n >= 6);

    const seen: { contact: { waId: string }; unreadCount: number; lastMessage: { body: string; direction: string } | null }[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const r = await get(`/v1/conversations?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      expect(r.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...r.body.data);
      cursor = r.body.nextCursor;
      if (!cursor) break;
    }
    const ours = seen.filter((c) => people.includes(c.contact.waId));
    expect(ours.map((c) => c.contact.waId)).toEqual(['5511900000102', '5511900000105', '5511900000104', '5511900000103', '5511900000101']);
    expect(new Set(seen.map((c) => (c as unknown as { id: number }).id)).size).toBe(seen.length);
    expect(ours[0]).toMatchObject({ unreadCount: 2, lastMessage: { body: 'newest', direction: 'inbound' }, contact: { profileName: 'Customer 102' } });
    expect(ours[1]).toMatchObject({ unreadCount: 1, lastMessage: { body: 'hello at 14' } });

    // Read one of them: the filter must leave exactly that one out, not just return unread rows.
    const readOne = await conversationOf('5511900000101');
    expect((await fetch(`${stack.app.url}/v1/conversations/${readOne}/read`, { method: 'POST', headers: auth })).status).toBe(200);
    const unread = await get('/v1/conversations?unread=true&limit=200');
    expect(unread.status).toBe(200);
    const unreadOurs = unread.body.data.filter((c: { contact: { waId: string } }) => people.includes(c.contact.waId));
    expect(unreadOurs.map((c: { contact: { waId: string }; unreadCount: number }) => [c.contact.waId, c.unreadCount])).toEqual([
      ['5511900000102', 2], ['5511900000105', 1], ['5511900000104', 1], ['5511900000103', 1],
    ]);
    expect(unread.body.data.filter((c: { unreadCount: number }) => c.unreadCount === 0)).toEqual([]);
  });

  it('pages through rows whose activity differs by microseconds (cursor precision)', async () => {
    const { rows: [ch] } = await stack.db.pool.query('SELECT id FROM channels ORDER BY id LIMIT 1');
    const ids: number[] = [];
    for (const us of ['401', '402', '403']) {
      const { rows: [c] } = await stack.db.pool.query("INSERT INTO contacts (wa_id) VALUES ($1) RETURNING id", [`55119000009${us}`]);
      const { rows: [cv] } = await stack.db.pool.query(`INSERT INTO conversations (channel_id, contact_id, last_message_at) VALUES ($1, $2, '2099-01-01 00:00:00.123${us}+00') RETURNING id`, [ch.id, c.id]);
      ids.push(cv.id);
    }
    const seen: number[] = [];
    let cursor: string | null = null;
    for (let i = 0; i < 3; i++) {
      const r = await get(`/v1/conversations?limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(r.body.data[0].id);
      cursor = r.body.nextCursor;
    }
    expect(seen).toEqual([...ids].reverse());
  });

  it('pages past the last conversation with a message into those without one, and through them', async () => {
    const { rows: [ch] } = await stack.db.pool.query('SELECT id FROM channels ORDER BY id LIMIT 1');
    const make = async (waId: string, at: string | null) => {
      const { rows: [c] } = await stack.db.pool.query('INSERT INTO contacts (wa_id) VALUES ($1) RETURNING id', [waId]);
      return (await stack.db.pool.query('INSERT INTO conversations (channel_id, contact_id, last_message_at) VALUES ($1, $2, $3) RETURNING id', [ch.id, c.id, at])).rows[0].id as number;
    };
    // The oldest activity of the whole inbox, so these two are the last rows with a time.
    const dated = [await make('5511900000501', '1971-01-01T00:00:00Z'), await make('5511900000502', '1970-06-01T00:00:00Z')];
    const empty = [await make('5511900000503', null), await make('5511900000504', null), await make('5511900000505', null)];
    const seen: number[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 100; page++) {
      const r = await get(`/v1/conversations?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      seen.push(...r.body.data.map((c: { id: number }) => c.id));
      cursor = r.body.nextCursor;
      if (!cursor) break;
    }
    expect(new Set(seen).size).toBe(seen.length);
    const ours = new Set([...dated, ...empty]);
    expect(seen.filter((id) => ours.has(id))).toEqual([...dated, ...[...empty].reverse()]);
    // Every conversation without a message comes after all that have one.
    const nulls = (await stack.db.pool.query<{ id: string }>('SELECT id FROM conversations WHERE last_message_at IS NULL')).rows.map((r) => Number(r.id));
    expect(seen.slice(seen.length - nulls.length).sort()).toEqual(nulls.sort());
  });

  it('refuses a cursor it did not give out and a bad limit', async () => {
    expect((await get('/v1/conversations?cursor=not-a-cursor')).body.error.code).toBe('invalid_cursor');
    const r = await get('/v1/conversations?limit=0');
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_query');
  });

  it('needs the bearer token', async () => {
    expect((await fetch(`${stack.app.url}/v1/conversations`)).status).toBe(401);
  });
});

describe('GET /v1/conversations/:id/messages', () => {
  it('pages a conversation newest first', async () => {
    const who = '5511900000201';
    for (let i = 0; i < 5; i++) await postWebhook(stack.app.url, inbound(who, 200 + i));
    const id = await eventually(async () => {
      const cid = await conversationOf(who);
      const n = cid ? (await stack.db.pool.query('SELECT count(*)::int AS n FROM messages WHERE conversation_id = $1', [cid])).rows[0].n : 0;
      return n === 5 ? cid : null;
    });
    const bodies: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 5; page++) {
      const r = await get(`/v1/conversations/${id}/messages?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      bodies.push(...r.body.data.map((m: { body: string }) => m.body));
      expect(r.body.data[0]).not.toHaveProperty('raw');
      cursor = r.body.nextCursor;
      if (!cursor) break;
    }
    expect(bodies).toEqual(['hello at 204', 'hello at 203', 'hello at 202', 'hello at 201', 'hello at 200']);
    expect((await get('/v1/conversations/999999999/messages')).status).toBe(404);
    expect((await get('/v1/conversations/abc/messages')).status).toBe(404);
  });
});

describe('POST /v1/conversations/:id/read', () => {
  it('clears the unread count and sends Meta a read receipt for the last inbound message', async () => {
    const who = '5511900000301';
    const last = wamid();
    await postWebhook(stack.app.url, inbound(who, 300));
    await postWebhook(stack.app.url, inbound(who, 301, last));
    const id = await eventually(async () => {
      const cid = await conversationOf(who);
      const r = cid ? (await get(`/v1/conversations/${cid}`)).body : null;
      return r?.unreadCount === 2 ? cid : null;
    });
    const res = await fetch(`${stack.app.url}/v1/conversations/${id}/read`, { method: 'POST', headers: auth, body: JSON.stringify({ readReceipt: true }) });
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ id, unreadCount: 0, readReceipt: { sent: true, wamid: last } });
    expect(stack.sim.reads.map((r) => r.wamid)).toContain(last);
    expect((await get(`/v1/conversations/${id}`)).body.unreadCount).toBe(0);

    const viaQuery = await fetch(`${stack.app.url}/v1/conversations/${id}/read?sendReadReceipts=true`, { method: 'POST', headers: auth });
    expect((await json(viaQuery)).readReceipt).toEqual({ sent: true, wamid: last });
    const plain = await fetch(`${stack.app.url}/v1/conversations/${id}/read`, { method: 'POST', headers: auth });
    expect(await json(plain)).toEqual({ id, unreadCount: 0 });
    expect((await fetch(`${stack.app.url}/v1/conversations/999999999/read`, { method: 'POST', headers: auth })).status).toBe(404);
  });
});

describe('GET /v1/events', () => {
  it('streams message.created, conversation.updated and message.status over SSE', async () => {
    expect((await fetch(`${stack.app.url}/v1/events`)).status).toBe(401);
    const sse = openSse(`?access_token=${API_TOKEN}`);
    expect((await sse.ready).headers.get('content-type')).toMatch(/^text\/event-stream/);
    try {
      await new Promise((r) => setTimeout(r, 200));
      const who = '5511900000401';
      const id = wamid();
      await postWebhook(stack.app.url, inbound(who, 400, id));
      const created = await eventually(async () => sse.events.find((e) => e.event === 'message.created' && e.data.wamid === id));
      expect(created.data).toMatchObject({ type: 'message.created', direction: 'inbound', messageType: 'text' });
      const conversationId = created.data.conversationId;
      await eventually(async () => sse.events.find((e) => e.event === 'conversation.updated' && e.data.conversationId === conversationId));

      const send = await fetch(`${stack.app.url}/v1/messages`, { method: 'POST', headers: auth, body: JSON.stringify({ to: who, type: 'text', text: { body: 'on it' } }) });
      const { id: messageId } = await json(send);
      await eventually(async () => sse.events.find((e) => e.event === 'message.created' && e.data.messageId === messageId && e.data.direction === 'outbound'));
      await eventually(async () => sse.events.find((e) => e.event === 'message.status' && e.data.messageId === messageId && e.data.status === 'read'), { what: 'read status event' });
      expect(Number(sse.events.at(-1)!.id)).toBeGreaterThan(Number(sse.events[0]!.id));
    } finally {
      await sse.close();
    }
  });

  it('filters by type', async () => {
    const sse = openSse(`?access_token=${API_TOKEN}&types=conversation.updated`);
    await sse.ready;
    try {
      await new Promise((r) => setTimeout(r, 200));
      await postWebhook(stack.app.url, inbound('5511900000402', 401));
      await eventually(async () => sse.events.length > 0);
      expect(new Set(sse.events.map((e) => e.event))).toEqual(new Set(['conversation.updated']));
    } finally {
      await sse.close();
    }
  });

  it('gives streams asking different types each exactly their types of a shared batch', async () => {
    const a = openSse(`?access_token=${API_TOKEN}&types=conversation.updated`);
    const b = openSse(`?access_token=${API_TOKEN}&types=message.created,message.status`);
    const c = openSse(`?access_token=${API_TOKEN}&types=message.status,message.created`);
    for (const s of [a, b, c]) expect((await s.ready).status).toBe(200);
    // Only this test's conversations: late events of the tests before may still arrive.
    const ours = (s: typeof a) => s.events.filter((e) => Number(e.data.conversationId) >= 7001);
    const channel = `${stack.app.app.config.QUEUE_PREFIX}:events`;
    const redis = new Redis(inject('redisUrl'));
    try {
      await eventually(async () => ((await redis.pubsub('NUMSUB', channel)) as [string, number])[1] >= 1, { what: 'events subscription' });
      const batch = [
        { type: 'message.created', conversationId: 7001, channelId: 1, messageId: 1 },
        { type: 'conversation.updated', conversationId: 7002, channelId: 1 },
        { type: 'message.status', conversationId: 7003, channelId: 1, messageId: 2, status: 'sent' },
      ];
      // Two publishes back to back: they may arrive in one read and be merged into one batch.
      await Promise.all([redis.publish(channel, JSON.stringify(batch)), redis.publish(channel, JSON.stringify([{ ...batch[1]!, conversationId: 7004 }]))]);
      await eventually(async () => [a, b, c].every((s) => ours(s).length >= 2), { what: 'events' });
      await new Promise((r) => setTimeout(r, 300));
      expect(ours(a).map((e) => e.data.conversationId)).toEqual([7002, 7004]);
      expect(ours(b).map((e) => e.data.conversationId)).toEqual([7001, 7003]);
      expect(ours(c).map((e) => [e.id, e.data.conversationId])).toEqual(ours(b).map((e) => [e.id, e.data.conversationId]));
    } finally {
      redis.disconnect();
      await Promise.all([a.close(), b.close(), c.close()]);
    }
  });

  it('carries text beyond ASCII intact, SSE and WebSocket alike (a chunk is sized in bytes, a message is text)', async () => {
    const sse = openSse(`?access_token=${API_TOKEN}&types=message.status`);
    expect((await sse.ready).status).toBe(200);
    const ws = new WebSocket(`${stack.app.url.replace(/^http/, 'ws')}/v1/events?types=message.status`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
    const got: { text: boolean; event: Record<string, unknown> }[] = [];
    ws.on('message', (data, isBinary) => got.push({ text: !isBinary, event: JSON.parse(String(data)) }));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const channel = `${stack.app.app.config.QUEUE_PREFIX}:events`;
    const redis = new Redis(inject('redisUrl'));
    try {
      await eventually(async () => ((await redis.pubsub('NUMSUB', channel)) as [string, number])[1] >= 1, { what: 'events subscription' });
      const titles = ['Mensagem não entregue ✓', '受信者に届きませんでした 📵', 'plain ASCII after them'];
      await redis.publish(channel, JSON.stringify(titles.map((title, i) => ({ type: 'message.status', conversationId: 7101 + i, channelId: 1, messageId: 3, status: 'failed', error: { code: 131026, title } }))));
      const ours = () => sse.events.filter((e) => Number(e.data.conversationId) >= 7101);
      await eventually(async () => ours().length === 3 && got.filter((g) => Number(g.event.conversationId) >= 7101).length === 3, { what: 'the three events on both streams' });
      expect(ours().map((e) => (e.data.error as { title: string }).title)).toEqual(titles);
      const mine = got.filter((g) => Number(g.event.conversationId) >= 7101);
      expect(mine.map((g) => (g.event.error as { title: string }).title)).toEqual(titles);
      expect(mine.every((g) => g.text)).toBe(true);
    } finally {
      redis.disconnect();
      ws.close();
      await sse.close();
    }
  });

  it('speaks WebSocket on the same path, with the bearer header', async () => {
    const refused = new WebSocket(`${stack.app.url.replace(/^http/, 'ws')}/v1/events`);
    const code = await new Promise<number>((resolve) => {
      refused.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      refused.on('error', () => resolve(-1));
    });
    expect(code).toBe(401);

    const ws = new WebSocket(`${stack.app.url.replace(/^http/, 'ws')}/v1/events?types=message.created`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
    const got: Record<string, unknown>[] = [];
    ws.on('message', (data) => got.push(JSON.parse(String(data))));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    try {
      const id = wamid();
      await postWebhook(stack.app.url, inbound('5511900000403', 402, id));
      const e = await eventually(async () => got.find((x) => x.wamid === id));
      expect(e).toMatchObject({ type: 'message.created', direction: 'inbound' });
      expect(got.every((x) => x.type === 'message.created')).toBe(true);
    } finally {
      ws.close();
    }
  });
});

describe('realtime: history summaries, the clients gauge and slow clients', () => {
  const gauge = async () => Number((await (await fetch(`${stack.app.url}/metrics`)).text()).match(/^wa_router_realtime_clients (\d+)$/m)?.[1]);
  // Events as a worker publishes them, 256 KB each. A client that stops reading holds at most
  // 4 MB in the server's buffer plus what the kernel buffers on both ends of a loopback socket
  // (the send buffer grows up to tcp_wmem's maximum, an unread receive buffer stays near
  // tcp_rmem's default), so it must be cut off within that many events.
  const EVENT_BYTES = 256 * 1024;
  const tcpMem = (name: string, field: number) => Number(fs.readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8').trim().split(/\s+/)[field]);
  const CUT_OFF_WITHIN = Math.ceil((4 * 1024 * 1024 + tcpMem('tcp_wmem', 2) + 2 * tcpMem('tcp_rmem', 1)) / EVENT_BYTES) + 4;
  /** Publishes until the gauge drops below `open` (bounded far beyond the cut-off); the number published. */
  async function publishUntilCut(redis: Redis, open: number): Promise<number> {
    const channel = `${stack.app.app.config.QUEUE_PREFIX}:events`;
    const padding = 'x'.repeat(EVENT_BYTES);
    let published = 0;
    for (; published < 4 * CUT_OFF_WITHIN && (await gauge()) === open; published++) {
      await redis.publish(channel, JSON.stringify([{ type: 'history.chunk', n: published, padding }]));
      await new Promise((r) => setTimeout(r, 5));
    }
    return published;
  }

  it('sends one history.chunk summary per applied chunk, no per-message events, none for a repeat', async () => {
    const sse = openSse(`?access_token=${API_TOKEN}`);
    await sse.ready;
    try {
      await new Promise((r) => setTimeout(r, 200));
      const thread = historyThread({ waId: '5511900000501', count: 3 });
      const body = JSON.stringify(envelope(historyChange({ phase: 0, chunkOrder: 41, progress: 30, threads: [thread] })));
      expect((await postWebhook(stack.app.url, body)).status).toBe(200);
      const chunk = await eventually(async () => sse.events.find((e) => e.event === 'history.chunk' && e.data.chunkOrder === 41), { what: 'history.chunk event' });
      expect(chunk.data).toMatchObject({ phase: 0, progress: 30, messages: 3, inserted: 3, conversations: 1 });
      // The same bytes again are a repeat: applied nowhere, announced nowhere.
      expect((await postWebhook(stack.app.url, body)).status).toBe(200);
      const ch = (await stack.db.pool.query('SELECT id FROM channels WHERE phone_number_id = $1', [PHONE_NUMBER_ID])).rows[0].id as number;
      await eventually(async () => (await get(`/v1/channels/${ch}/sync`)).body.chunksReceived === 2, { what: 'repeat received' });
      await new Promise((r) => setTimeout(r, 300));
      const wamids = new Set(thread.messages.map((m) => m.id));
      expect(sse.events.filter((e) => e.event === 'history.chunk' && e.data.chunkOrder === 41)).toHaveLength(1);
      expect(sse.events.filter((e) => wamids.has(e.data.wamid as string))).toEqual([]);
    } finally {
      await sse.close();
    }
  });

  it('counts open streams in wa_router_realtime_clients and cuts off a client 4 MB behind, not a reading one', async () => {
    // Earlier tests' streams are closed by now; the count starts from none.
    await eventually(async () => (await gauge()) === 0, { what: 'no stream open' });
    const reading = openSse(`?access_token=${API_TOKEN}&types=history.chunk`);
    await reading.ready;
    // A client that stops reading: a raw socket whose reads are paused after the headers.
    const slow = net.connect(Number(new URL(stack.app.url).port), '127.0.0.1');
    slow.setNoDelay(true);
    await new Promise<void>((resolve) => slow.once('connect', () => resolve()));
    slow.write(`GET /v1/events?access_token=${API_TOKEN} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n`);
    await new Promise<void>((resolve) => slow.once('data', () => resolve()));
    slow.pause();
    await eventually(async () => (await gauge()) === 2, { what: 'gauge counts both streams' });

    const redis = new Redis(inject('redisUrl'));
    try {
      const published = await publishUntilCut(redis, 2);
      expect(published).toBeLessThanOrEqual(CUT_OFF_WITHIN);
      expect(await gauge()).toBe(1);
      // The cut-off client reads again: its connection is gone and the backlog was dropped, not
      // kept in the server for it (8 MB came, then nothing, while the connection stayed open,
      // when the server only called end()).
      let received = 0;
      const outcome = new Promise<string>((resolve) => {
        slow.on('data', (d: Buffer) => (received += d.length));
        slow.once('end', () => resolve('end'));
        slow.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      });
      slow.resume();
      const how = await Promise.race([outcome, new Promise<string>((r) => setTimeout(() => r('still open'), 10_000))]);
      expect(how).not.toBe('still open');
      expect(received).toBeLessThan(4 * 1024 * 1024);
      // The reading client was never cut: it got every event published.
      await eventually(async () => reading.events.length === published, { what: 'reader got every event' });
      expect(reading.events.map((e) => e.data.n)).toEqual(reading.events.map((_, i) => i));
    } finally {
      redis.disconnect();
      slow.destroy();
      await reading.close();
    }
    await eventually(async () => (await gauge()) === 0, { what: 'gauge back to none' });
  });

  it('cuts off a WebSocket client 4 MB behind: its socket is closed and the gauge drops', async () => {
    await eventually(async () => (await gauge()) === 0, { what: 'no stream open' });
    const slow = new WebSocket(`${stack.app.url.replace(/^http/, 'ws')}/v1/events?types=history.chunk`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
    let received = 0;
    slow.on('message', () => received++);
    const closed = new Promise<string>((resolve) => slow.once('close', () => resolve('closed')));
    await new Promise<void>((resolve, reject) => {
      slow.once('open', () => resolve());
      slow.once('error', reject);
    });
    await eventually(async () => (await gauge()) === 1, { what: 'gauge counts the socket' });
    // Stops reading: the socket's reads are paused, so the kernel buffers and then the server's fill.
    slow.pause();
    const redis = new Redis(inject('redisUrl'));
    try {
      const published = await publishUntilCut(redis, 1);
      expect(published).toBeLessThanOrEqual(CUT_OFF_WITHIN);
      expect(await gauge()).toBe(0);
      slow.resume();
      const how = await Promise.race([closed, new Promise<string>((r) => setTimeout(() => r('still open'), 10_000))]);
      expect(how).toBe('closed');
      expect(received).toBeLessThan(published);
    } finally {
      redis.disconnect();
      slow.terminate();
    }
  });
});

describe('/admin/queues (Bull Board)', () => {
  it('needs the bearer token and shows the queues with it', async () => {
    const anonymous = await fetch(`${stack.app.url}/admin/queues`);
    expect(anonymous.status).toBe(401);
    expect((await json(anonymous)).error.code).toBeDefined();
    expect((await fetch(`${stack.app.url}/admin/queues`, { headers: { authorization: 'Bearer not-the-token-0123456789' } })).status).toBe(401);
    const page = await fetch(`${stack.app.url}/admin/queues`, { headers: auth });
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/<html/i);
    const api = await fetch(`${stack.app.url}/admin/queues/api/queues`, { headers: auth });
    expect(api.status).toBe(200);
    const names = ((await json(api)).queues as { name: string }[]).map((q) => q.name);
    expect(names).toEqual(expect.arrayContaining(['inbound', 'history']));
    expect((await fetch(`${stack.app.url}/admin/queues/api/queues`)).status).toBe(401);
  });
});

describe('a graceful stop', () => {
  it('ends open event streams instead of waiting on them', async () => {
    const web = await startApp(stack.db, 'web', { GRAPH_API_BASE_URL: stack.sim.url });
    const res = await fetch(`${web.url}/v1/events?access_token=${API_TOKEN}`);
    expect(res.status).toBe(200);
    const t0 = Date.now();
    await web.stop();
    expect(Date.now() - t0).toBeLessThan(5_000);
    await res.body?.cancel().catch(() => undefined);
  });
});
