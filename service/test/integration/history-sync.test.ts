// Coexistence at scale, with real Postgres and Redis: history chunks applied exactly once even
// when the worker is SIGKILLed halfway, in any order and repeated; echoes and contact-book
// changes land; live webhooks stay fast while a sync runs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { historyChunks } from '../../../bench/lib/history.js';
import { appStateSyncChange, echoChange, echoEdit, echoMessage, echoRevoke, editMessage, envelope, historyChange, historyErrorChange, historyMessage, historyThread, imageMessage, stateSyncContact, status, statusEnvelope, textMessage } from '../fixtures/payloads.js';
import { API_TOKEN, createTestDb, PHONE_NUMBER_ID, testEnv, type TestDb } from '../helpers/context.js';
import { appForFile, eventually, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { spawnService, type ServiceProcess } from '../helpers/process.js';

const historyCount = async (db: TestDb) => Number((await db.pool.query("SELECT count(*) AS n FROM messages WHERE source = 'history'")).rows[0].n);

async function postAll(url: string, bodies: string[]): Promise<void> {
  for (let i = 0; i < bodies.length; i += 8) {
    const res = await Promise.all(bodies.slice(i, i + 8).map((b) => postWebhook(url, b)));
    expect(res.map((r) => r.status)).toEqual(res.map(() => 200));
  }
}

/** What a sync leaves behind, independent of ids and arrival order. */
async function finalState(db: TestDb) {
  const messages = await db.pool.query(`SELECT m.wamid, m.direction, m.type, m.status, m.body, k.wa_id FROM messages m JOIN contacts k ON k.id = m.contact_id WHERE m.source = 'history' ORDER BY m.wamid`);
  const conversations = await db.pool.query(`SELECT k.wa_id, c.unread_count, c.last_message_at, lm.wamid AS last_wamid FROM conversations c JOIN contacts k ON k.id = c.contact_id LEFT JOIN messages lm ON lm.id = c.last_message_id ORDER BY k.wa_id`);
  const run = await db.pool.query('SELECT status, progress, chunks_applied, messages_stored FROM sync_runs');
  return { messages: messages.rows, conversations: conversations.rows, run: run.rows };
}

describe('a 10,000-message history with the worker SIGKILLed halfway', () => {
  let db: TestDb;
  let web: RunningApp;
  let env: Record<string, string>;
  const workers: ServiceProcess[] = [];
  beforeAll(async () => {
    db = await createTestDb();
    env = testEnv(db, { WORKER_LOCK_MS: '2000', HISTORY_CONCURRENCY: '2' });
    web = await startApp(db, 'web', env);
  });
  afterAll(async () => {
    for (const w of workers) await w.kill();
    await web?.stop();
    await db?.drop();
  });

  it('ends with exactly 10,000 rows, every chunk applied once, and live webhooks visible within 1 s', async () => {
    const chunks = historyChunks({ phoneNumberId: PHONE_NUMBER_ID, messages: 10_000, conversations: 200, perChunk: 250 });
    await postAll(web.url, chunks.map((c) => c.body));
    const first = spawnService('worker', env);
    workers.push(first);
    await eventually(async () => (await historyCount(db)) >= 2_500, { timeoutMs: 90_000, intervalMs: 50, what: 'history progress' }).catch((e: Error) => {
      throw new Error(`${e.message}\n${first.output()}`);
    });
    await first.kill('SIGKILL');
    const atKill = await historyCount(db);
    expect(atKill).toBeLessThan(10_000);

    const second = spawnService('worker', env);
    workers.push(second);
    // A live message while the rest of the sync runs: stored and visible within a second.
    await eventually(async () => (await historyCount(db)) > atKill, { timeoutMs: 60_000, intervalMs: 50, what: 'sync resumed' });
    const live = JSON.stringify({ object: 'whatsapp_business_account', entry: [{ id: '1', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550783881', phone_number_id: PHONE_NUMBER_ID }, contacts: [{ profile: { name: 'Live' }, wa_id: '5511999990000' }], messages: [textMessage({ from: '5511999990000', id: 'wamid.LIVE-DURING-SYNC', body: 'still there?' })] } }] }] });
    const t0 = Date.now();
    expect((await postWebhook(web.url, live)).status).toBe(200);
    await eventually(async () => {
      const r = await fetch(`${web.url}/v1/messages?wamid=wamid.LIVE-DURING-SYNC`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
      return r.status === 200;
    }, { timeoutMs: 5_000, intervalMs: 20, what: 'live message visible' });
    const visibleMs = Date.now() - t0;
    const midSync = await historyCount(db);
    expect(visibleMs).toBeLessThan(1_000);

    await eventually(async () => (await historyCount(db)) === 10_000, { timeoutMs: 120_000, intervalMs: 200, what: 'all 10,000 stored' }).catch((e: Error) => {
      throw new Error(`${e.message}\n${second.output()}`);
    });
    expect(midSync).toBeLessThanOrEqual(10_000);
    // Nothing applied twice across the crash: the run's own totals (which no constraint guards)
    // count each chunk and each stored message once.
    const runRow = (await db.pool.query('SELECT chunks_applied, messages_stored FROM sync_runs')).rows;
    expect(runRow).toEqual([{ chunks_applied: chunks.length, messages_stored: 10_000 }]);
    const chunkRows = await db.pool.query('SELECT count(*) AS n, sum(messages_stored) AS stored FROM sync_chunks');
    expect({ chunks: Number(chunkRows.rows[0].n), stored: Number(chunkRows.rows[0].stored) }).toEqual({ chunks: chunks.length, stored: 10_000 });
    // History never counts as unread: nobody has to read what the app already showed.
    const unread = await db.pool.query("SELECT coalesce(sum(unread_count), 0) AS n FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE k.wa_id LIKE '5521%'");
    expect(Number(unread.rows[0].n)).toBe(0);

    const channel = (await db.pool.query('SELECT id FROM channels WHERE phone_number_id = $1', [PHONE_NUMBER_ID])).rows[0].id as number;
    const res = await fetch(`${web.url}/v1/channels/${channel}/sync`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
    const sync = await res.json() as Record<string, unknown>;
    expect(sync).toMatchObject({ status: 'completed', progress: 100, chunksApplied: chunks.length, chunksFailed: 0, messagesStored: 10_000 });
    expect(sync['chunksReceived']).toBeGreaterThanOrEqual(chunks.length);
  }, 240_000);
});

describe('order and repeats do not matter', () => {
  const chunks = historyChunks({ phoneNumberId: PHONE_NUMBER_ID, messages: 3_000, conversations: 60, perChunk: 200, prefix: 'ORDER' });
  const run = async (bodies: string[]) => {
    const db = await createTestDb();
    const app = await startApp(db, 'all', { HISTORY_CONCURRENCY: '3' });
    try {
      await postAll(app.url, bodies);
      await eventually(async () => (await historyCount(db)) === 3_000 && (await db.pool.query("SELECT 1 FROM sync_runs WHERE status = 'completed' AND chunks_applied = $1", [chunks.length])).rowCount === 1, { timeoutMs: 90_000, intervalMs: 100, what: 'sync complete' });
      return await finalState(db);
    } finally {
      await app.stop();
      await db.drop();
    }
  };

  it('shuffled and duplicated chunks give the same final state as ordered ones', async () => {
    const ordered = await run(chunks.map((c) => c.body));
    const shuffled = [...chunks.map((c) => c.body), ...chunks.map((c) => c.body)];
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
    }
    const messy = await run(shuffled);
    expect(messy.messages).toHaveLength(3_000);
    expect(messy).toEqual(ordered);
  }, 240_000);
});

describe('an early progress-100 chunk', () => {
  it('does not complete the run while a chunk_order before it is missing', async () => {
    const db = await createTestDb();
    const app = await startApp(db, 'all');
    const auth = { authorization: `Bearer ${API_TOKEN}` };
    try {
      const channel = (await db.pool.query('SELECT id FROM channels WHERE phone_number_id = $1', [PHONE_NUMBER_ID])).rows[0].id as number;
      const sync = async () => (await fetch(`${app.url}/v1/channels/${channel}/sync`, { headers: auth })).json() as Promise<Record<string, unknown>>;
      const chunk = (order: number, progress: number) => JSON.stringify(envelope(historyChange({ phase: 0, chunkOrder: order, progress, threads: [historyThread({ waId: `55219000000${order}`, count: 2 })] })));
      expect((await postWebhook(app.url, chunk(1, 40))).status).toBe(200);
      // Chunk 3 says 100 % but chunk 2 has not arrived (Meta's chunks come in any order).
      expect((await postWebhook(app.url, chunk(3, 100))).status).toBe(200);
      await eventually(async () => (await sync())['chunksApplied'] === 2, { what: 'two chunks applied' });
      expect(await sync()).toMatchObject({ status: 'running', progress: 100, chunksApplied: 2 });
      expect((await db.pool.query('SELECT completed_at FROM sync_runs')).rows[0]).toEqual({ completed_at: null });
      expect((await postWebhook(app.url, chunk(2, 70))).status).toBe(200);
      await eventually(async () => (await sync())['status'] === 'completed', { what: 'completed once chunk 2 landed' });
      expect(await sync()).toMatchObject({ status: 'completed', progress: 100, chunksApplied: 3, messagesStored: 6 });
    } finally {
      await app.stop();
      await db.drop();
    }
  });
});

describe('several channels syncing at once', () => {
  it('a second channel\'s history is not queued behind the first one\'s', async () => {
    const db = await createTestDb();
    const app = await startApp(db, 'all', { HISTORY_CONCURRENCY: '1' });
    try {
      const created = await fetch(`${app.url}/v1/channels`, { method: 'POST', headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ phoneNumberId: '222333444555', accessToken: 'second-token' }) });
      expect(created.status).toBeLessThan(300);
      const big = historyChunks({ phoneNumberId: PHONE_NUMBER_ID, messages: 8_000, conversations: 100, perChunk: 200, prefix: 'FAIRA' });
      const small = historyChunks({ phoneNumberId: '222333444555', messages: 600, conversations: 20, perChunk: 200, prefix: 'FAIRB' });
      await postAll(app.url, big.map((c) => c.body));
      await postAll(app.url, small.map((c) => c.body));
      const done = async () => (await db.pool.query<{ phone_number_id: string; completed_at: Date | null }>('SELECT ch.phone_number_id, r.completed_at FROM sync_runs r JOIN channels ch ON ch.id = r.channel_id')).rows;
      await eventually(async () => (await done()).filter((r) => r.completed_at).length === 2, { timeoutMs: 120_000, intervalMs: 100, what: 'both syncs complete' });
      const at = Object.fromEntries((await done()).map((r) => [r.phone_number_id, r.completed_at!.getTime()]));
      // The small sync arrived after all of the big one's chunks, yet finished first.
      expect(at['222333444555']).toBeLessThan(at[PHONE_NUMBER_ID]!);
    } finally {
      await app.stop();
      await db.drop();
    }
  }, 180_000);
});

describe('a failing chunk stays with its channel', () => {
  it('one channel\'s dead-lettered chunk leaves another channel\'s sync untouched, and a replay completes it', async () => {
    const db = await createTestDb();
    const app = await startApp(db, 'all', { INBOUND_ATTEMPTS: '2', HISTORY_CONCURRENCY: '2' });
    const auth = { authorization: `Bearer ${API_TOKEN}` };
    try {
      const created = await fetch(`${app.url}/v1/channels`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ phoneNumberId: '222333444666', accessToken: 'second-token' }) });
      const second = (await created.json() as { id: number }).id;
      const first = (await db.pool.query('SELECT id FROM channels WHERE phone_number_id = $1', [PHONE_NUMBER_ID])).rows[0].id as number;
      const a = historyChunks({ phoneNumberId: PHONE_NUMBER_ID, messages: 1_000, conversations: 20, perChunk: 200, prefix: 'ISOA' });
      const b = historyChunks({ phoneNumberId: '222333444666', messages: 1_000, conversations: 20, perChunk: 200, prefix: 'ISOB' });
      // One of channel A's messages cannot be written (a fault injected in Postgres itself): its
      // chunk fails for good, whatever the worker does.
      await db.pool.query(`CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused %', NEW.wamid; END $$;
        CREATE TRIGGER poison BEFORE INSERT ON messages FOR EACH ROW WHEN (NEW.wamid = 'wamid.HISTISOA000000450') EXECUTE FUNCTION refuse_poison()`);
      await postAll(app.url, [...a, ...b].map((c) => c.body));
      const sync = async (id: number) => (await fetch(`${app.url}/v1/channels/${id}/sync`, { headers: auth })).json() as Promise<Record<string, unknown>>;
      await eventually(async () => (await sync(second))['status'] === 'completed' && (await sync(first))['status'] === 'failed', { timeoutMs: 60_000, intervalMs: 100, what: 'B completed, A failed' });
      expect(await sync(second)).toMatchObject({ status: 'completed', chunksApplied: 5, chunksFailed: 0, messagesStored: 1_000 });
      expect(await sync(first)).toMatchObject({ status: 'failed', chunksApplied: 4, chunksFailed: 1, messagesStored: 800, failedChunks: [{ phase: 1, chunkOrder: 1 }] });
      const metrics = await (await fetch(`${app.url}/metrics`)).text();
      expect(metrics).toContain(`wa_router_history_sync_chunks{channel="${first}",state="failed"} 1`);
      expect(metrics).toContain(`wa_router_history_sync_progress{channel="${second}"} 100`);

      await db.pool.query('DROP TRIGGER poison ON messages');
      const dead = await (await fetch(`${app.url}/v1/dead-letters?queue=history`, { headers: auth })).json() as { items: { id: string }[] };
      expect(dead.items).toHaveLength(1);
      expect((await fetch(`${app.url}/v1/dead-letters/${encodeURIComponent(dead.items[0]!.id)}/replay`, { method: 'POST', headers: auth })).status).toBe(202);
      await eventually(async () => (await sync(first))['status'] === 'completed', { timeoutMs: 30_000, intervalMs: 100, what: 'A completed after the replay' });
      expect(await sync(first)).toMatchObject({ chunksApplied: 5, chunksFailed: 0, messagesStored: 1_000, failedChunks: [] });
      expect(await historyCount(db)).toBe(2_000);
    } finally {
      await app.stop();
      await db.drop();
    }
  }, 120_000);
});

describe('media placeholders, echoes, contact-book sync and a declined history', () => {
  const stack = appForFile('all');
  const post = async (body: unknown) => expect((await postWebhook(stack.app.url, JSON.stringify(body))).status).toBe(200);
  const metric = async (line: string) => (await (await fetch(`${stack.app.url}/metrics`)).text()).split('\n').find((l) => l.startsWith(line));
  /** The inbox's search for a number, and the conversation ids that number's contact has. */
  const searchNumber = async (waId: string) => ({
    found: ((await (await fetch(`${stack.app.url}/v1/conversations?q=${waId}`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).json()) as { data: { id: number }[] }).data.map((c) => Number(c.id)),
    own: (await stack.db.pool.query<{ id: number }>('SELECT c.id::int AS id FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE k.wa_id = $1', [waId])).rows.map((r) => r.id),
  });

  it('fills a history placeholder with the media id a later history webhook brings; that webhook again is a no-op', async () => {
    const waId = '5511966665555';
    const img = imageMessage({ from: waId, caption: 'the receipt' });
    const { id: _dropped, url: _url, ...withoutId } = img['image'] as Record<string, unknown>;
    const placeholder = { ...img, image: withoutId } as typeof img;
    await post(envelope(historyChange({ phase: 1, chunkOrder: 7, progress: 40, threads: [{ id: waId, messages: [historyMessage(placeholder)] }] })));
    const row = await eventually(async () => (await stack.db.pool.query('SELECT media_id, body, source FROM messages WHERE wamid = $1', [img.id])).rows[0], { what: 'placeholder stored' });
    expect(row).toEqual({ media_id: null, body: 'the receipt', source: 'history' });
    // The conversation the history created is found by its number.
    const byNumber = await searchNumber(waId);
    expect(byNumber.own).toHaveLength(1);
    expect(byNumber.found).toEqual(byNumber.own);

    const followUp = envelope(historyChange({ phase: 1, chunkOrder: 7, progress: 40, threads: [{ id: waId, messages: [historyMessage(img)] }] }));
    await post(followUp);
    const mediaId = (img['image'] as { id: string }).id;
    await eventually(async () => (await stack.db.pool.query('SELECT 1 FROM messages WHERE wamid = $1 AND media_id = $2', [img.id, mediaId])).rowCount === 1, { what: 'media id filled' });
    await post(followUp);
    const channel = (await stack.db.pool.query('SELECT id FROM channels WHERE phone_number_id = $1', [PHONE_NUMBER_ID])).rows[0].id as number;
    await eventually(async () => {
      const sync = await (await fetch(`${stack.app.url}/v1/channels/${channel}/sync`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).json() as { chunksReceived: number; queue: Record<string, number> };
      return sync.chunksReceived === 3 && sync.queue['waiting']! + sync.queue['prioritized']! + sync.queue['active']! === 0;
    }, { what: 'repeat delivered and settled' });
    const chunk = (await stack.db.pool.query('SELECT array_length(digests, 1) AS deliveries FROM sync_chunks WHERE phase = 1 AND chunk_order = 7')).rows[0];
    expect(chunk).toEqual({ deliveries: 2 });
    expect(await metric('wa_router_history_media_filled_total')).toBe('wa_router_history_media_filled_total 1');
    // One slot, one chunk applied; the follow-up is not counted as another chunk.
    expect((await stack.db.pool.query('SELECT chunks_applied FROM sync_runs')).rows[0]).toEqual({ chunks_applied: 1 });
  });

  it('stores the business app\'s messages as outbound and applies their edits and revokes', async () => {
    const original = echoMessage(textMessage({ body: 'Price is 10' }), { to: '5511988887777' });
    await post(envelope(echoChange({ echoes: [original] })));
    const row = await eventually(async () => (await stack.db.pool.query("SELECT direction, source, body FROM messages WHERE wamid = $1", [original.id])).rows[0], { what: 'echo stored' });
    expect(row).toEqual({ direction: 'outbound', source: 'echo', body: 'Price is 10' });
    const byNumber = await searchNumber('5511988887777');
    expect(byNumber.own).toHaveLength(1);
    expect(byNumber.found).toEqual(byNumber.own);

    await post(envelope(echoChange({ echoes: [echoEdit(original.id, 'Price is 12', { to: '5511988887777' })] })));
    await eventually(async () => (await stack.db.pool.query('SELECT 1 FROM messages WHERE wamid = $1 AND body = $2 AND edited_at IS NOT NULL', [original.id, 'Price is 12'])).rowCount === 1, { what: 'edit applied' });
    await post(envelope(echoChange({ echoes: [echoRevoke(original.id, { to: '5511988887777' })] })));
    await eventually(async () => (await stack.db.pool.query('SELECT 1 FROM messages WHERE wamid = $1 AND revoked_at IS NOT NULL', [original.id])).rowCount === 1, { what: 'revoke applied' });
    // Edits and revokes change the message; they are not messages of the timeline themselves.
    expect((await stack.db.pool.query("SELECT count(*)::int AS n FROM messages WHERE type IN ('edit', 'revoke')")).rows[0]).toEqual({ n: 0 });
    // Echoes are the business's own words: never unread.
    const unread = await stack.db.pool.query("SELECT c.unread_count FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE k.wa_id = '5511988887777'");
    expect(unread.rows[0].unread_count).toBe(0);
  });

  it('applies an edit and a status that arrive before their echo once the echo lands', async () => {
    const to = '5511944443333';
    const original = echoMessage(textMessage({ body: 'See you at 3', timestamp: 1_739_300_000 }), { to });
    await post(envelope(echoChange({ echoes: [echoMessage(editMessage({ originalMessageId: original.id, body: 'See you at 4', timestamp: 1_739_300_060 }), { to })] })));
    await post(statusEnvelope([status({ id: original.id, status: 'read', recipientId: to })]));
    await eventually(async () => (await stack.db.pool.query('SELECT 1 FROM message_statuses WHERE wamid = $1', [original.id])).rowCount === 1, { what: 'early status kept' });
    await eventually(async () => (await stack.db.pool.query('SELECT 1 FROM message_edits WHERE target_wamid = $1', [original.id])).rowCount === 1, { what: 'early edit kept' });
    await post(envelope(echoChange({ echoes: [original] })));
    const row = await eventually(async () => (await stack.db.pool.query('SELECT body, status, edited_at FROM messages WHERE wamid = $1', [original.id])).rows[0], { what: 'echo stored' });
    expect(row).toMatchObject({ body: 'See you at 4', status: 'read' });
    expect((row as { edited_at: Date }).edited_at.getTime()).toBe(1_739_300_060_000);
  });

  it('keeps each number\'s contact book: adds, renames and removes, the latest change winning whatever the order', async () => {
    const channel = (await stack.db.pool.query('SELECT id FROM channels WHERE phone_number_id = $1', [PHONE_NUMBER_ID])).rows[0].id as number;
    const book = async (waId: string) => (await stack.db.pool.query('SELECT cc.saved_name, cc.removed_at IS NOT NULL AS removed FROM channel_contacts cc JOIN contacts k ON k.id = cc.contact_id WHERE k.wa_id = $1 AND cc.channel_id = $2', [waId, channel])).rows[0];
    await post(envelope(appStateSyncChange({ items: [stateSyncContact({ phoneNumber: '5511977776666', fullName: 'Ana Souza', timestamp: 1_739_000_100 })] })));
    await eventually(async () => (await book('5511977776666'))?.saved_name === 'Ana Souza', { what: 'contact added' });
    await post(envelope(appStateSyncChange({ items: [stateSyncContact({ action: 'remove', phoneNumber: '5511977776666', timestamp: 1_739_000_300 })] })));
    await eventually(async () => (await book('5511977776666'))?.removed, { what: 'contact removed' });
    // An older rename delivered late does not bring the contact back.
    await post(envelope(appStateSyncChange({ items: [stateSyncContact({ phoneNumber: '5511977776666', fullName: 'Ana S.', timestamp: 1_739_000_200 })] })));
    await post(envelope(appStateSyncChange({ items: [stateSyncContact({ phoneNumber: '5511977775555', fullName: 'Marker', timestamp: 1_739_000_400 })] })));
    await eventually(async () => (await book('5511977775555'))?.saved_name === 'Marker', { what: 'later webhook applied' });
    expect(await book('5511977776666')).toEqual({ saved_name: 'Ana Souza', removed: true });
    await post(envelope(appStateSyncChange({ items: [stateSyncContact({ phoneNumber: '5511977776666', fullName: 'Ana Lima', timestamp: 1_739_000_500 })] })));
    await eventually(async () => (await book('5511977776666'))?.saved_name === 'Ana Lima', { what: 'contact added again' });
    expect(await book('5511977776666')).toEqual({ saved_name: 'Ana Lima', removed: false });
  });

  it('takes a whole contact book in one webhook', async () => {
    const items = Array.from({ length: 3_000 }, (_, i) => stateSyncContact({ phoneNumber: `55119${String(i).padStart(8, '0')}`, fullName: `Cliente ${i}`, timestamp: 1_739_000_000 }));
    await post(envelope(appStateSyncChange({ items })));
    await eventually(async () => (await stack.db.pool.query("SELECT count(*)::int AS n FROM channel_contacts cc JOIN contacts k ON k.id = cc.contact_id WHERE k.wa_id LIKE '55119%' AND cc.saved_name LIKE 'Cliente %'")).rows[0].n === 3_000, { what: '3,000 contacts saved' });
  });

  it('keeps a history webhook for a number no channel serves, unrouted, instead of dropping it', async () => {
    const [chunk] = historyChunks({ phoneNumberId: '999000111222', messages: 10, conversations: 2, prefix: 'UNROUTED' });
    expect((await postWebhook(stack.app.url, chunk!.body)).status).toBe(200);
    await eventually(async () => (await stack.db.pool.query("SELECT 1 FROM inbound_events WHERE unrouted AND '999000111222' = ANY(phone_number_ids)")).rowCount === 1, { what: 'unrouted history kept' });
  });

  it('records a declined history (2593109) instead of dropping it, and a declined sync is no stalled one', async () => {
    const channel = (await stack.db.pool.query('SELECT id FROM channels WHERE phone_number_id = $1', [PHONE_NUMBER_ID])).rows[0].id as number;
    const lastApplied = `wa_router_history_sync_last_applied_timestamp_seconds{channel="${channel}"} `;
    // A running sync exports when it last applied a chunk (what WaRouterHistorySyncStalled ages).
    const before = Date.now() / 1000;
    await post(envelope(historyChange({ phase: 2, chunkOrder: 1, progress: 60, threads: [historyThread({ waId: '5511933332222', start: 1_739_400_000 })] })));
    await eventually(async () => (await stack.db.pool.query("SELECT 1 FROM sync_chunks WHERE phase = 2 AND chunk_order = 1 AND state = 'applied'")).rowCount === 1, { what: 'chunk applied' });
    const exported = Number((await metric(lastApplied))?.slice(lastApplied.length));
    expect(exported).toBeGreaterThanOrEqual(Math.floor(before) - 1);
    expect(exported).toBeLessThanOrEqual(Date.now() / 1000 + 1);

    await post(envelope(historyErrorChange()));
    const run = await eventually(async () => (await stack.db.pool.query("SELECT status, error_code FROM sync_runs WHERE status = 'declined'")).rows[0], { what: 'sync run recorded' });
    expect(run).toEqual({ status: 'declined', error_code: 2593109 });
    // Declined waits for nothing from Meta: no last-applied time, so the stall alert cannot fire.
    await eventually(async () => (await metric(lastApplied)) === undefined, { what: 'last-applied time withdrawn', timeoutMs: 5_000 });
    expect(await metric(`wa_router_history_sync_progress{channel="${channel}"}`)).toBeDefined();
  });
});
