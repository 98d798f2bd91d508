// Coexistence at scale, with real Postgres and Redis: history chunks applied exactly once even
// when the worker is SIGKILLed halfway, in any order and repeated; echoes and contact-book
// changes land; live webhooks stay fast while a sync runs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { historyChunks } from '../../../bench/lib/history.js';
import { appStateSyncChange, echoChange, echoEdit, echoMessage, echoRevoke, envelope, historyErrorChange, stateSyncContact, textMessage } from '../fixtures/payloads.js';
import { API_TOKEN, createTestDb, PHONE_NUMBER_ID, testEnv, type TestDb } from '../helpers/context.js';
import { eventually, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
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
    const dup = await db.pool.query("SELECT count(*) AS n FROM (SELECT wamid FROM messages WHERE source = 'history' GROUP BY wamid HAVING count(*) > 1) d");
    expect(Number(dup.rows[0].n)).toBe(0);
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

describe('echoes, contact-book sync and a declined history', () => {
  let db: TestDb;
  let app: RunningApp;
  beforeAll(async () => {
    db = await createTestDb();
    app = await startApp(db, 'all');
  });
  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('stores the business app\'s messages as outbound and applies their edits and revokes', async () => {
    const original = echoMessage(textMessage({ body: 'Price is 10' }), { to: '5511988887777' });
    expect((await postWebhook(app.url, JSON.stringify(envelope(echoChange({ echoes: [original] }))))).status).toBe(200);
    const row = await eventually(async () => (await db.pool.query("SELECT direction, source, body FROM messages WHERE wamid = $1", [original.id])).rows[0], { what: 'echo stored' });
    expect(row).toEqual({ direction: 'outbound', source: 'echo', body: 'Price is 10' });

    await postWebhook(app.url, JSON.stringify(envelope(echoChange({ echoes: [echoEdit(original.id, 'Price is 12', { to: '5511988887777' })] }))));
    await eventually(async () => (await db.pool.query('SELECT 1 FROM messages WHERE wamid = $1 AND body = $2 AND edited_at IS NOT NULL', [original.id, 'Price is 12'])).rowCount === 1, { what: 'edit applied' });
    await postWebhook(app.url, JSON.stringify(envelope(echoChange({ echoes: [echoRevoke(original.id, { to: '5511988887777' })] }))));
    await eventually(async () => (await db.pool.query('SELECT 1 FROM messages WHERE wamid = $1 AND revoked_at IS NOT NULL', [original.id])).rowCount === 1, { what: 'revoke applied' });
    // Echoes are the business's own words: never unread.
    const unread = await db.pool.query("SELECT c.unread_count FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE k.wa_id = '5511988887777'");
    expect(unread.rows[0].unread_count).toBe(0);
  });

  it('adds, renames and removes contacts from the Business app\'s contact book', async () => {
    await postWebhook(app.url, JSON.stringify(envelope(appStateSyncChange({ items: [stateSyncContact({ phoneNumber: '5511977776666', fullName: 'Ana Souza' })] }))));
    await eventually(async () => (await db.pool.query("SELECT 1 FROM contacts WHERE wa_id = '5511977776666' AND saved_name = 'Ana Souza' AND removed_at IS NULL")).rowCount === 1, { what: 'contact added' });
    await postWebhook(app.url, JSON.stringify(envelope(appStateSyncChange({ items: [stateSyncContact({ action: 'remove', phoneNumber: '5511977776666' })] }))));
    await eventually(async () => (await db.pool.query("SELECT 1 FROM contacts WHERE wa_id = '5511977776666' AND removed_at IS NOT NULL")).rowCount === 1, { what: 'contact removed' });
  });

  it('keeps a history webhook for a number no channel serves, unrouted, instead of dropping it', async () => {
    const [chunk] = historyChunks({ phoneNumberId: '999000111222', messages: 10, conversations: 2, prefix: 'UNROUTED' });
    expect((await postWebhook(app.url, chunk!.body)).status).toBe(200);
    await eventually(async () => (await db.pool.query("SELECT 1 FROM inbound_events WHERE unrouted AND '999000111222' = ANY(phone_number_ids)")).rowCount === 1, { what: 'unrouted history kept' });
  });

  it('records a declined history (2593109) instead of dropping it', async () => {
    expect((await postWebhook(app.url, JSON.stringify(envelope(historyErrorChange())))).status).toBe(200);
    const run = await eventually(async () => (await db.pool.query('SELECT status, error_code FROM sync_runs')).rows[0], { what: 'sync run recorded' });
    expect(run).toEqual({ status: 'declined', error_code: 2593109 });
  });
});
