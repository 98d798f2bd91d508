// Media in tests: a real S3-compatible store (Versity S3 Gateway) of its own per file, inbound media
// messages whose bytes the Graph simulator serves, and where their copies stand.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { inject } from 'vitest';
import { startS3, type S3Handle } from '../../../scripts/stack/versitygw.js';
import type { GraphSimulator } from '../../../scripts/graph-sim/server.js';
import type { SimMediaItem } from '../../../scripts/graph-sim/media.js';
import { inboundEnvelope, audioMessage, documentMessage, imageMessage, stickerMessage, videoMessage, type InboundMessage } from '../fixtures/payloads.js';
import { postWebhook } from './app.js';
import type { TestDb } from './context.js';

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

