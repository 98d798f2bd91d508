// Inbound media from the Graph simulator into the filesystem store: every media type stored
// byte for byte, Meta's checks (SHA-256, size, MIME type), expired URLs and media, history
// placeholders, serving (ranges, tokens, signed links) and uploads. media-s3.test.ts runs the
// S3-compatible store.
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GraphSimulator } from '../../../scripts/graph-sim/server.js';
import { signMediaPath } from '../../src/media/routes.js';
import { keyForSha256 } from '../../src/media/store.js';
import { loadMigrations, migrate } from '../../src/store/migrate.js';
import { API_TOKEN, createTestDb, PHONE_NUMBER_ID, testEnv, type TestDb } from '../helpers/context.js';
import { eventually, json, postWebhook, startApp, type RunningApp } from '../helpers/app.js';
import { bytesOf, mediaOf, receiveItem, receiveMedia, startMediaStack, type Kind, type MediaStack } from '../helpers/media.js';
import { envelope, historyChange, historyMessage, imageMessage, inboundEnvelope } from '../fixtures/payloads.js';
import { openSse } from '../helpers/events.js';

let db: TestDb;
let sim: GraphSimulator;
let app: RunningApp;
let env: Record<string, string>;
let stack: MediaStack | undefined;
const auth = { authorization: `Bearer ${API_TOKEN}` };

const stored = (wamid: string, status = 'stored') => stack!.statusOf(wamid, status);

beforeAll(async () => {
  stack = await startMediaStack((d, g) => (env = testEnv(d, { GRAPH_API_BASE_URL: g.url, MEDIA_BACKOFF_MS: '100', MEDIA_POLL_MS: '50', FORWARD_ALLOW_PRIVATE: 'true' })));
  ({ db, sim, app } = stack);
});
afterAll(async () => {
  await stack?.stop();
});

describe('inbound media', () => {
  it('stores each media type byte for byte; the message shows it stored with a working signed link', async () => {
    const cases: [Kind, string, number][] = [['image', 'image/jpeg', 150_000], ['audio', 'audio/ogg; codecs=opus', 40_000], ['video', 'video/mp4', 2_500_000], ['document', 'application/pdf', 700_000], ['sticker', 'image/webp', 30_000]];
    const sent = await Promise.all(cases.map(async ([kind, mime, size]) => {
      const bytes = bytesOf(size);
      return { kind, bytes, ...(await receiveMedia(app.url, sim, kind, bytes, mime)) };
    }));
    for (const s of sent) {
      const m = await stored(s.wamid);
      const res = await fetch(`${app.url}/v1/media/${m.messageId}`, { headers: auth });
      expect(res.status, s.kind).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(s.bytes), `${s.kind} bytes`).toBe(true);
      const view = await json(await fetch(`${app.url}/v1/messages/${m.messageId}`, { headers: auth }));
      expect(view.media).toMatchObject({ id: s.item.id, status: 'stored', error: null });
      // The link works without a token, and only as signed.
      const link = await fetch(`${app.url}${view.media.url}`);
      expect(link.status).toBe(200);
      expect(Buffer.from(await link.arrayBuffer()).equals(s.bytes)).toBe(true);
      const forged = view.media.url.replace(/signature=\w+/, `signature=${'0'.repeat(64)}`);
      expect(forged).not.toBe(view.media.url);
      expect((await fetch(`${app.url}${forged}`)).status).toBe(401);
    }
  });

  it('records a SHA-256 mismatch as failed and serves nothing', async () => {
    const bytes = bytesOf(20_000);
    const item = sim.media.add(bytes, 'image/jpeg');
    item.sha256 = 'a'.repeat(64);
    const { wamid } = await receiveItem(app.url, 'image', item);
    const m = await stored(wamid, 'failed');
    expect(m.errorCode).toBe('sha256_mismatch');
    const res = await fetch(`${app.url}/v1/media/${m.messageId}`, { headers: auth });
    expect(res.status).toBe(409);
    expect((await json(res)).error.code).toBe('media_failed');
  });

  it('refuses an image over Meta\'s 5 MB without downloading a byte', async () => {
    const { wamid, item } = await receiveMedia(app.url, sim, 'image', bytesOf(5 * 1024 * 1024 + 1), 'image/jpeg');
    const m = await stored(wamid, 'failed');
    expect(m.errorCode).toBe('too_large');
    expect(item.served).toBe(0);
  });

  it('cuts a download once it passes the size Meta declared (far below what it serves), and keeps nothing', async () => {
    const bytes = bytesOf(32 * 1024 * 1024);
    const item = sim.media.add(bytes, 'image/jpeg');
    item.fileSize = 100_000;
    const { wamid } = await receiveItem(app.url, 'image', item);
    const m = await stored(wamid, 'failed');
    // The declared 100 KB is where the stream stops: the bytes past it are never stored.
    expect(m.errorCode).toBe('size_mismatch');
    expect(m.storageKey).toBeNull();
    // Read up to the declared size and what was in flight then (socket buffers), not the 32 MB.
    expect(item.served).toBeLessThan(16 * 1024 * 1024);
    expect(fs.existsSync(path.join(env.MEDIA_FS_DIR!, keyForSha256(item.sha256)))).toBe(false);
    const partial = path.join(env.MEDIA_FS_DIR!, '.partial');
    expect(fs.existsSync(partial) ? fs.readdirSync(partial) : [], 'temp files left').toEqual([]);
    expect((await fetch(`${app.url}/v1/media/${m.messageId}`, { headers: auth })).status).toBe(409);
  });

  it('refuses a MIME type Meta does not list for the type', async () => {
    const { wamid } = await receiveMedia(app.url, sim, 'image', bytesOf(1_000), 'image/gif');
    expect((await stored(wamid, 'failed')).errorCode).toBe('unsupported_mime');
  });

  it('asks for a new URL when one expired between the metadata and the download', async () => {
    sim.configure({ mediaExpiredUrls: 1 });
    const bytes = bytesOf(50_000);
    const { wamid, item } = await receiveMedia(app.url, sim, 'document', bytes, 'application/pdf');
    await stored(wamid);
    expect(sim.media.metadataRequests.get(item.id)).toBe(2);
  });

  it('records media Meta no longer has as failed, asking once', async () => {
    const item = sim.media.add(bytesOf(1_000), 'audio/mpeg');
    item.expired = true;
    const before = sim.stats.errors[100] ?? 0;
    const { wamid } = await receiveItem(app.url, 'audio', item);
    expect((await stored(wamid, 'failed')).errorCode).toBe('not_found');
    await new Promise((r) => setTimeout(r, 500));
    expect(sim.stats.errors[100]).toBe(before + 1);
    expect((await mediaOf(db, wamid))?.status).toBe('failed');
  });

  it('retries metadata 5xx with a fresh URL each time', async () => {
    sim.configure({ mediaMetadataFailures: 2 });
    const { wamid, item } = await receiveMedia(app.url, sim, 'image', bytesOf(10_000), 'image/png');
    await stored(wamid);
    expect(sim.media.metadataRequests.get(item.id)).toBe(1);
  });

  it('pauses the channel when Meta refuses its token, asks Meta nothing more while paused, and downloads once a new token is saved', async () => {
    const channel = async () => ((await json(await fetch(`${app.url}/v1/channels`, { headers: auth }))).items as { phoneNumberId: string; paused: boolean; pausedReason: string | null }[])
      .find((c) => c.phoneNumberId === PHONE_NUMBER_ID)!;
    const refused = () => sim.stats.errors[190] ?? 0;
    const before = refused();
    // The token was rotated at Meta: ours is refused (Graph error 190).
    sim.tokens.set(PHONE_NUMBER_ID, 'rotated-token');
    let a: Awaited<ReturnType<typeof receiveMedia>>;
    try {
      a = await receiveMedia(app.url, sim, 'image', bytesOf(10_000), 'image/jpeg');
      const b = await receiveMedia(app.url, sim, 'image', bytesOf(11_000), 'image/jpeg');
      const paused = await eventually(async () => {
        const c = await channel();
        return c.paused ? c : null;
      }, { what: 'channel paused', timeoutMs: 15_000 });
      expect(paused.pausedReason).toContain('190');
      const atPause = refused();
      // A media arriving while paused waits too, without asking.
      const c = await receiveMedia(app.url, sim, 'image', bytesOf(12_000), 'image/jpeg');
      await new Promise((r) => setTimeout(r, 2_000));
      expect(refused(), 'requests Meta refused while the channel is paused').toBe(atPause);
      expect(atPause - before, 'requests Meta refused in all (one per download in flight)').toBeLessThanOrEqual(2);
      expect(await Promise.all([a, b, c].map(async (m) => (await mediaOf(db, m.wamid))?.status))).toEqual(['pending', 'pending', 'pending']);
    } finally {
      sim.tokens.set(PHONE_NUMBER_ID, 'test-access-token');
    }
    const saved = await fetch(`${app.url}/v1/channels`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ phoneNumberId: PHONE_NUMBER_ID, accessToken: 'test-access-token' }) });
    expect(saved.status).toBe(200);
    expect((await channel()).paused).toBe(false);
    await stored(a.wamid);
  }, 60_000);

  it('downloads a history placeholder once its media id arrives', async () => {
    const waId = '5511966660001';
    const bytes = bytesOf(80_000);
    const item = sim.media.add(bytes, 'image/jpeg');
    const img = imageMessage({ from: waId, mediaId: item.id, sha256: item.sha256 });
    const { id: _dropped, url: _url, ...withoutId } = img['image'] as Record<string, unknown>;
    const placeholder = { ...img, image: withoutId } as typeof img;
    await postWebhook(app.url, JSON.stringify(envelope(historyChange({ phase: 1, chunkOrder: 1, progress: 10, threads: [{ id: waId, messages: [historyMessage(placeholder)] }] }))));
    await eventually(async () => (await db.pool.query('SELECT 1 FROM messages WHERE wamid = $1', [img.id])).rowCount === 1, { what: 'placeholder stored' });
    expect(await mediaOf(db, img.id)).toBeUndefined();
    await postWebhook(app.url, JSON.stringify(envelope(historyChange({ phase: 1, chunkOrder: 2, progress: 20, threads: [{ id: waId, messages: [historyMessage(img)] }] }))));
    const m = await stored(img.id);
    const res = await fetch(`${app.url}/v1/media/${m.messageId}`, { headers: auth });
    expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('stores media downloaded together each with its own outcome, and tells agents once per message', async () => {
    const sse = openSse(app.url, `?access_token=${API_TOKEN}&types=message.media`);
    expect((await sse.ready).status).toBe(200);
    // One webhook of 24 images: the worker has several in flight and records their outcomes in
    // shared statements; every third of eight lies about its SHA-256.
    const items = Array.from({ length: 24 }, (_, i) => {
      const item = sim.media.add(bytesOf(10_000 + i), 'image/jpeg');
      if (i % 8 === 3) item.sha256 = 'b'.repeat(64);
      return item;
    });
    const messages = items.map((item, i) => imageMessage({ from: `55119555${String(i).padStart(5, '0')}`, mediaId: item.id, mimeType: item.mime, sha256: item.sha256 }));
    expect((await postWebhook(app.url, JSON.stringify(inboundEnvelope(messages)))).status).toBe(200);
    try {
      for (const [i, item] of items.entries()) {
        const liar = i % 8 === 3;
        const m = await stored(messages[i]!.id, liar ? 'failed' : 'stored');
        if (liar) {
          expect(m.errorCode).toBe('sha256_mismatch');
        } else {
          const res = await fetch(`${app.url}/v1/media/${m.messageId}`, { headers: auth });
          expect(Buffer.from(await res.arrayBuffer()).equals(item.bytes), `image ${i}`).toBe(true);
        }
        const events = await eventually(async () => {
          const mine = sse.events.filter((e) => e.data.messageId === m.messageId);
          return mine.length > 0 ? mine : null;
        }, { what: `message.media of image ${i}` });
        expect(events.map((e) => e.data.status), `image ${i}`).toEqual([liar ? 'failed' : 'stored']);
      }
    } finally {
      await sse.close();
    }
  });

  it('keeps the same bytes once', async () => {
    const bytes = bytesOf(30_000);
    const a = await receiveMedia(app.url, sim, 'image', bytes, 'image/jpeg');
    const ma = await stored(a.wamid);
    const b = await receiveMedia(app.url, sim, 'image', bytes, 'image/jpeg');
    const mb = await stored(b.wamid);
    expect(ma.storageKey).toBe(mb.storageKey);
    expect(a.item.served + b.item.served).toBe(bytes.length);
  });

  it('downloads again bytes whose stored object is gone, when Meta does not declare the size', async () => {
    const bytes = bytesOf(25_000);
    const first = await stored((await receiveMedia(app.url, sim, 'image', bytes, 'image/jpeg')).wamid);
    fs.rmSync(path.join(env.MEDIA_FS_DIR!, first.storageKey!));
    const item = sim.media.add(bytes, 'image/jpeg');
    (item as { fileSize?: number }).fileSize = undefined;
    const again = await stored((await receiveItem(app.url, 'image', item)).wamid);
    expect(item.served).toBe(bytes.length);
    const res = await fetch(`${app.url}/v1/media/${again.messageId}`, { headers: auth });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
  });
});

describe('media of messages stored before the media migration', () => {
  it('are downloaded once the migration runs', async () => {
    const old = await createTestDb({ empty: true });
    try {
      await migrate(old.pool, loadMigrations().filter((m) => m.version < 18));
      const bytes = bytesOf(30_000);
      const item = sim.media.add(bytes, 'image/jpeg');
      await old.pool.query(
        `WITH ch AS (INSERT INTO channels (phone_number_id, access_token) VALUES ($1, 'test-access-token') RETURNING id),
              ct AS (INSERT INTO contacts (wa_id) VALUES ('5511966660000') RETURNING id),
              cv AS (INSERT INTO conversations (channel_id, contact_id) SELECT ch.id, ct.id FROM ch, ct RETURNING id, channel_id, contact_id)
         INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, type, media_id, media_mime_type, raw, wa_timestamp, status)
         SELECT 'wamid.before-media', channel_id, id, contact_id, 'inbound', 'image', $2, 'image/jpeg', '{}', now(), 'received' FROM cv`,
        [PHONE_NUMBER_ID, item.id],
      );
      await migrate(old.pool);
      expect((await old.pool.query('SELECT meta_id AS "metaId", status FROM media')).rows).toEqual([{ metaId: item.id, status: 'pending' }]);
      const later = await startApp(old, 'all', { GRAPH_API_BASE_URL: sim.url, MEDIA_BACKOFF_MS: '100', MEDIA_POLL_MS: '50' });
      try {
        const m = await eventually(async () => {
          const r = await mediaOf(old, 'wamid.before-media');
          return r?.status === 'stored' ? r : null;
        }, { what: 'media of the earlier message stored', timeoutMs: 30_000 });
        // Not kept alive: the app stops right after, and a connection the server has not yet seen idle holds its close.
        const res = await fetch(`${later.url}/v1/media/${m.messageId}`, { headers: { ...auth, connection: 'close' } });
        expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
      } finally {
        await later.stop();
      }
    } finally {
      await old.drop();
    }
  });
});

describe('GET /v1/media/:messageId', () => {
  it('answers range requests for audio and video', async () => {
    const bytes = bytesOf(300_000);
    const { wamid } = await receiveMedia(app.url, sim, 'video', bytes, 'video/mp4');
    const { messageId } = await stored(wamid);
    const part = await fetch(`${app.url}/v1/media/${messageId}`, { headers: { ...auth, range: 'bytes=1000-1999' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 1000-1999/${bytes.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(1000, 2000))).toBe(true);
    const tail = await fetch(`${app.url}/v1/media/${messageId}`, { headers: { ...auth, range: 'bytes=-500' } });
    expect(Buffer.from(await tail.arrayBuffer()).equals(bytes.subarray(bytes.length - 500))).toBe(true);
    const beyond = await fetch(`${app.url}/v1/media/${messageId}`, { headers: { ...auth, range: `bytes=${bytes.length}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe(`bytes */${bytes.length}`);
    // A header that is not one valid byte range is ignored (RFC 9110 §14.2): the whole file, 200.
    for (const range of ['bytes=abc', 'bytes=0-99,200-299', 'bytes=2000-1000', 'items=0-99']) {
      const whole = await fetch(`${app.url}/v1/media/${messageId}`, { headers: { ...auth, range } });
      expect(whole.status, range).toBe(200);
      expect(Buffer.from(await whole.arrayBuffer()).equals(bytes), range).toBe(true);
    }
  });

  it('answers 401 to a wrong token and to none', async () => {
    const { wamid } = await receiveMedia(app.url, sim, 'image', bytesOf(1_000), 'image/jpeg');
    const { messageId } = await stored(wamid);
    expect((await fetch(`${app.url}/v1/media/${messageId}`, { headers: { authorization: 'Bearer not-a-token-of-ours-at-all' } })).status).toBe(401);
    expect((await fetch(`${app.url}/v1/media/${messageId}`)).status).toBe(401);
  });

  it('answers 401 to a rightly signed link that expired', async () => {
    const { wamid } = await receiveMedia(app.url, sim, 'image', bytesOf(1_000), 'image/jpeg');
    const { messageId } = await stored(wamid);
    const key = createHmac('sha256', API_TOKEN).update('wa-router media links').digest();
    const link = (expires: number) => `${app.url}/v1/media/${messageId}?expires=${expires}&signature=${signMediaPath(key, messageId, expires)}`;
    expect((await fetch(link(Math.floor(Date.now() / 1000) + 60))).status).toBe(200);
    const expired = await fetch(link(Math.floor(Date.now() / 1000) - 1));
    expect(expired.status).toBe(401);
    expect((await json(expired)).error.code).toBe('invalid_signature');
  });

  it("answers 404 to a token limited to other areas, as GET /v1/messages/:id does", async () => {
    const call = async (token: string, method: string, path: string, body?: unknown) => {
      const res = await fetch(`${app.url}${path}`, { method, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      return { status: res.status, body: (res.headers.get('content-type')?.includes('json') ? await res.json() : await res.arrayBuffer()) as Record<string, unknown> };
    };
    const [a, b] = [await call(API_TOKEN, 'POST', '/v1/areas', { name: 'Media A', webhookUrl: 'http://127.0.0.1:9/a' }), await call(API_TOKEN, 'POST', '/v1/areas', { name: 'Media B', webhookUrl: 'http://127.0.0.1:9/b' })];
    expect([a.status, b.status]).toEqual([201, 201]);
    const { wamid } = await receiveMedia(app.url, sim, 'image', bytesOf(20_000), 'image/jpeg');
    const { messageId } = await stored(wamid);
    const conv = (await db.pool.query<{ c: number }>('SELECT conversation_id::int AS c FROM messages WHERE id = $1', [messageId])).rows[0]!.c;
    expect((await call(API_TOKEN, 'POST', `/v1/conversations/${conv}/assign`, { areaId: a.body.id })).status).toBe(200);
    const tokenOf = async (areaId: unknown) => {
      const minted = await call(API_TOKEN, 'POST', '/v1/tokens', { name: `area ${String(areaId)} reader`, scopes: ['conversations:read'], areaIds: [areaId] });
      expect(minted.status).toBe(201);
      return minted.body.token as string;
    };
    const [tokenA, tokenB] = [await tokenOf(a.body.id), await tokenOf(b.body.id)];
    expect((await call(tokenB, 'GET', `/v1/messages/${messageId}`)).status).toBe(404);
    const other = await call(tokenB, 'GET', `/v1/media/${messageId}`);
    expect(other.status).toBe(404);
    expect((other.body.error as { code: string }).code).toBe('not_found');
    expect((await call(tokenA, 'GET', `/v1/media/${messageId}`)).status).toBe(200);
  });
});

describe('POST /v1/media', () => {
  const upload = (bytes: Buffer, mime: string, filename: string, channelId?: string) => {
    const form = new FormData();
    if (channelId !== undefined) form.append('channelId', channelId);
    form.append('file', new Blob([bytes], { type: mime }), filename);
    return fetch(`${app.url}/v1/media`, { method: 'POST', headers: auth, body: form });
  };

  it('stores an upload, hands it to Meta, and a send by its id carries it', async () => {
    const bytes = bytesOf(120_000);
    const res = await upload(bytes, 'image/png', 'chart.png');
    expect(res.status).toBe(201);
    const up = await json(res);
    expect(up).toMatchObject({ type: 'image', mimeType: 'image/png', size: bytes.length });
    const atMeta = sim.media.items.get(up.id)!;
    expect(atMeta).toMatchObject({ uploadedBy: PHONE_NUMBER_ID, mime: 'image/png', filename: 'chart.png' });
    expect(atMeta.bytes.equals(bytes)).toBe(true);
    const to = '5511955554444';
    const sent = await fetch(`${app.url}/v1/messages`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ to, type: 'image', image: { id: up.id, caption: 'the chart' } }) });
    expect(sent.status).toBe(202);
    const atSim = await eventually(async () => sim.sent.find((s) => s.to === to), { what: 'send reached the simulator' });
    expect(atSim.body.image).toEqual({ id: up.id, caption: 'the chart' });
  });

  it('refuses a type Meta does not support, and a file over its limit', async () => {
    const gif = await upload(bytesOf(100), 'image/gif', 'a.gif');
    expect(gif.status).toBe(415);
    expect((await json(gif)).error.code).toBe('unsupported_media_type');
    const big = await upload(bytesOf(500 * 1024 + 1), 'image/webp', 'big.webp');
    expect(big.status).toBe(413);
    expect((await json(big)).error.code).toBe('too_large');
    expect([...sim.media.items.values()].filter((i) => i.filename === 'big.webp')).toHaveLength(0);
  });

  it('answers 400 to a channelId that is not a number', async () => {
    const res = await upload(bytesOf(1_000), 'image/png', 'x.png', 'abc');
    expect(res.status).toBe(400);
    expect((await json(res)).error.code).toBe('invalid_upload');
  });

  it('keeps no row and no file of an upload Meta refuses', async () => {
    await db.pool.query("UPDATE channels SET access_token = 'refused-by-meta'");
    try {
      const res = await upload(bytesOf(2_000), 'image/png', 'refused.png');
      expect(res.status).toBe(502);
      expect((await json(res)).error.code).toBe('graph_upload_failed');
    } finally {
      await db.pool.query("UPDATE channels SET access_token = 'test-access-token'");
    }
    expect((await db.pool.query("SELECT id FROM media WHERE filename = 'refused.png'")).rows).toEqual([]);
    const uploads = path.join(env.MEDIA_FS_DIR!, 'uploads');
    const kept = await Promise.all((fs.existsSync(uploads) ? fs.readdirSync(uploads) : []).map(async (f) => (await db.pool.query('SELECT 1 FROM media WHERE storage_key = $1', [`uploads/${f}`])).rowCount));
    expect(kept.filter((n) => n === 0), 'upload files no row names').toEqual([]);
  });
});
