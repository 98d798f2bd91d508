// Media in tests: a real S3-compatible store (Versity S3 Gateway) of its own per file, inbound media
// messages whose bytes the Graph simulator serves, and where their copies stand.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { inject } from 'vitest';
import { startS3, type S3Handle } from '../../../scripts/stack/versitygw.js';
import { startGraphSimulator, type GraphSimulator } from '../../../scripts/graph-sim/server.js';
import type { SimMediaItem } from '../../../scripts/graph-sim/media.js';
import { inboundEnvelope, audioMessage, documentMessage, imageMessage, stickerMessage, videoMessage, type InboundMessage } from '../fixtures/payloads.js';
import { eventually, postWebhook, startApp, type RunningApp } from './app.js';
import { APP_SECRET, createTestDb, PHONE_NUMBER_ID, type TestDb } from './context.js';

export function startTestS3(): Promise<S3Handle> {
  const id = randomBytes(4).toString('hex');
  return startS3({ dir: path.join(inject('stackDir'), `s3-${id}`), bucket: `wa-media-${id}` });
}

const BUILDERS = { image: imageMessage, audio: audioMessage, video: videoMessage, document: documentMessage, sticker: stickerMessage } as const;
export type Kind = keyof typeof BUILDERS;

/** Bytes that do not compress or repeat, so a byte-for-byte comparison means something. */
export const bytesOf = (n: number) => randomBytes(n);

/** A customer's media message: its bytes on the simulator, the webhook posted; answers the wamid and the simulator's item. */
export function receiveMedia(appUrl: string, sim: GraphSimulator, kind: Kind, bytes: Buffer, mime: string): Promise<{ wamid: string; item: SimMediaItem }> {
  return receiveItem(appUrl, kind, sim.media.add(bytes, mime));
}

/** The webhook of a message carrying a media item already on the simulator (one a test altered). */
export async function receiveItem(appUrl: string, kind: Kind, item: SimMediaItem, from = '5511977770000'): Promise<{ wamid: string; item: SimMediaItem }> {
  const message: InboundMessage = BUILDERS[kind]({ from, mediaId: item.id, mimeType: item.mime, sha256: item.sha256 });
  const res = await postWebhook(appUrl, JSON.stringify(inboundEnvelope([message])));
  if (res.status !== 200) throw new Error(`webhook answered ${res.status}: ${res.body}`);
  return { wamid: message.id, item };
}

export async function mediaOf(db: TestDb, wamid: string): Promise<{ id: number; messageId: number; status: string; errorCode: string | null; errorReason: string | null; storageKey: string | null } | undefined> {
  const { rows } = await db.pool.query(
    `SELECT d.id::int, m.id::int AS "messageId", d.status, d.error_code AS "errorCode", d.error_reason AS "errorReason", d.storage_key AS "storageKey"
       FROM messages m JOIN media d ON d.channel_id = m.channel_id AND d.meta_id = m.media_id WHERE m.wamid = $1`,
    [wamid],
  );
  return rows[0];
}


/** Requests seen by a loopback pass-through in front of the store: how many a write really costs. */
export interface CountingProxy {
  /** The endpoint to give a client in place of the store's. */
  readonly endpoint: string;
  /** Each request, as `METHOD /path` (no query), in arrival order; empty it to start counting anew. */
  readonly requests: string[];
  close(): Promise<void>;
}

/**
 * Forwards every request byte for byte, headers included (a SigV4 signature covers the Host it
 * was sent to, which the store checks as it receives it), and records it. A store that is down
 * ends the client's connection, as a refused connection would.
 */
export async function countingProxy(upstream: string): Promise<CountingProxy> {
  const target = new URL(upstream);
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${(req.url ?? '').split('?')[0]}`);
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    up.on('error', () => req.socket.destroy());
    req.on('aborted', () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** A database, the Graph simulator and an app on them: the setup of the media test files. */
export interface MediaStack {
  readonly db: TestDb;
  readonly sim: GraphSimulator;
  readonly app: RunningApp;
  /** The media of `wamid` once it has `status` (30 s at most). */
  statusOf(wamid: string, status: string): Promise<NonNullable<Awaited<ReturnType<typeof mediaOf>>>>;
  stop(): Promise<void>;
}

export async function startMediaStack(env: (db: TestDb, sim: GraphSimulator) => Record<string, string>): Promise<MediaStack> {
  const [db, sim] = await Promise.all([
    createTestDb(),
    startGraphSimulator({ tokens: { [PHONE_NUMBER_ID]: 'test-access-token' }, config: { appSecret: APP_SECRET, latencyMs: 1, jitterMs: 1 } }),
  ]);
  let app: RunningApp;
  try {
    app = await startApp(db, 'all', env(db, sim));
  } catch (err) {
    await sim.close();
    await db.drop();
    throw err;
  }
  return {
    db,
    sim,
    app,
    statusOf: (wamid, status) => eventually(async () => {
      const m = await mediaOf(db, wamid);
      return m?.status === status ? m : null;
    }, { what: `media of ${wamid} ${status}`, timeoutMs: 30_000 }),
    async stop() {
      await app.stop();
      await sim.close();
      await db.drop();
    },
  };
}
