// GET /v1/media/:messageId streams a stored file (range requests for audio and video) to a token
// or to a signed `media.url` link, or redirects to a presigned URL of the S3 store. POST /v1/media
// takes a multipart upload, checks its type and size as Meta does, stores it and uploads it to
// Meta, answering the Meta media id a send uses (`image: { id }`).
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import express, { Router, type Request, type RequestHandler, type Response } from 'express';
import busboy from 'busboy';
import { z } from 'zod';
import { HttpError } from '../http/errors.js';
import { defineOperations } from '../openapi/operation.js';
import { inAreas } from '../store/conversations.js';
import type { Pool } from '../store/pool.js';
import { areaLimit } from '../tokens/principal.js';
import type { GraphMediaClient } from './graph-media.js';
import { MAX_BYTES, typeOfMime } from './meta-types.js';
import type { MediaRepo } from './repo.js';
import type { ByteRange, MediaStore } from './store.js';
import { MediaCheckError, VerifyingStream } from './verify.js';

const messageId = z.object({ messageId: z.coerce.number().int().positive() });
// An empty field counts as absent, as a form leaves it.
const uploadFields = z.object({ channelId: z.union([z.literal('').transform(() => undefined), z.coerce.number().int().positive()]).optional() });
const signedQuery = z.object({ expires: z.coerce.number().int().positive(), signature: z.string().regex(/^[0-9a-f]{64}$/) });

export const uploadAnswerSchema = z
  .object({
    id: z.string().meta({ description: "Meta's media id: send it as `image: { id }` (or audio, video, document, sticker)" }),
    mediaId: z.number().int().meta({ description: "Our stored copy: a send by it (as a string) works from any channel, after Meta's 30 days too" }),
    type: z.enum(['audio', 'document', 'image', 'sticker', 'video']),
    mimeType: z.string(),
    size: z.number().int(),
    sha256: z.string(),
  })
  .meta({ id: 'MediaUpload' });

export const mediaOperations = defineOperations('Media', [
  {
    method: 'get', path: '/v1/media/:messageId', summary: "A message's stored media file",
    description: 'Streams the file (`Range` requests answer 206), or with an S3 store redirects (302) to a presigned URL. Authorized by a bearer token, or by the `expires` and `signature` of a `media.url` link. 409 while the media is not stored (pending or failed).',
    params: messageId, auth: 'bearer-or-query', scopes: ['conversations:read'], errors: [409, 416],
    responses: { 200: { description: 'The file', contentType: 'application/octet-stream' }, 206: { description: 'The range asked for', contentType: 'application/octet-stream' }, 302: { description: 'A presigned URL of the object store' } },
  },
  {
    method: 'post', path: '/v1/media', summary: 'Upload a file to send',
    description: "multipart/form-data with one `file` part (its content type must be one Meta supports; Meta's size limits apply) and an optional `channelId` field before it. Answers Meta's media id.",
    scopes: ['messages:send'], errors: [413, 415, 502],
    responses: { 201: uploadAnswerSchema },
  },
]);

export interface MediaRoutesDeps {
  readonly pool: Pool;
  readonly repo: MediaRepo;
  readonly store: MediaStore;
  readonly graph: GraphMediaClient;
  readonly urlKey: Buffer;
  readonly urlTtlSeconds: number;
  readonly redirect: boolean;
  /** The channel a request means: the one named, or the only/bootstrap one. */
  readonly resolveChannel: (channelId: number | undefined) => Promise<{ id: number; phoneNumberId: string; accessToken: string | null } | null>;
}

export const signMediaPath = (key: Buffer, id: number, expires: number) => createHmac('sha256', key).update(`${id}.${expires}`).digest('hex');

/**
 * The one range of `bytes=a-b`, `bytes=a-` or `bytes=-n` over a file of `size` bytes;
 * 'unsatisfiable' when well formed but outside the file (416); undefined when the header is to be
 * ignored and the whole file served (RFC 9110 §14.2): malformed, another unit, or several ranges.
 */
export function parseRange(header: string, size: number): ByteRange | 'unsatisfiable' | undefined {
  const m = /^bytes=(\d*)-(\d*)$/i.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Math.min(Number(m[2]), size);
    return n > 0 ? { start: size - n, end: size - 1 } : 'unsatisfiable';
  }
  const start = Number(m[1]);
  if (m[2] !== '' && Number(m[2]) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end: m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1) };
}

export function mediaRoutes(d: MediaRoutesDeps, auth: RequestHandler[]): Router {
  const r = Router();
  const signedOk = (req: Request, id: number) => {
    const q = signedQuery.safeParse(req.query);
    if (!q.success || q.data.expires < Date.now() / 1000) return false;
    const want = Buffer.from(signMediaPath(d.urlKey, id, q.data.expires), 'hex');
    return timingSafeEqual(want, Buffer.from(q.data.signature, 'hex'));
  };

  const serve = async (req: Request, res: Response) => {
    const { messageId: id } = messageId.parse(req.params);
    const m = await d.repo.ofMessage(id);
    // A token limited to areas sees the media of its areas' messages only, as on GET /v1/messages/:id
    // (a signed link carries no token, so no limit).
    if (!m || !(await inAreas(d.pool, m.conversationId, areaLimit(req)))) throw new HttpError(404, 'not_found', `message ${id} has no media`);
    if (m.status !== 'stored' || !m.storageKey) throw new HttpError(409, `media_${m.status}`, m.status === 'failed' ? `the media could not be stored: ${m.errorReason}` : 'the media is not stored yet', { status: m.status, code: m.errorCode });
    const mime = m.mimeType ?? 'application/octet-stream';
    if (d.redirect) {
      const url = await d.store.presign(m.storageKey, d.urlTtlSeconds, mime);
      if (url) return res.redirect(302, url);
    }
    const size = m.size ?? 0;
    const header = req.headers.range;
    const range = header ? parseRange(header, size) : undefined;
    if (range === 'unsatisfiable') {
      res.setHeader('content-range', `bytes */${size}`);
      throw new HttpError(416, 'range_not_satisfiable', `cannot serve ${header} of ${size} bytes`);
    }
    const obj = await d.store.get(m.storageKey, range);
    res.status(range ? 206 : 200);
    res.setHeader('content-type', mime);
    res.setHeader('accept-ranges', 'bytes');
    res.setHeader('cache-control', 'private, max-age=3600');
    if (m.sha256) res.setHeader('etag', `"${m.sha256}"`);
    res.setHeader('content-length', String(range ? range.end - range.start + 1 : obj.size));
    if (range) res.setHeader('content-range', `bytes ${range.start}-${range.end}/${obj.size}`);
    if (m.filename) res.setHeader('content-disposition', `inline; filename*=UTF-8''${encodeURIComponent(m.filename)}`);
    await pipeline(obj.body, res);
  };

  r.get('/media/:messageId', async (req, res, next) => {
    const id = messageId.safeParse(req.params);
    if (id.success && req.query.signature !== undefined) {
      if (!signedOk(req, id.data.messageId)) return next(new HttpError(401, 'invalid_signature', 'the media link is expired or its signature is wrong'));
      return serve(req, res).catch(next);
    }
    // Otherwise the token checks of the rest of /v1, one after the other.
    const run = (i: number) => {
      if (i === auth.length) return void serve(req, res).catch(next);
      auth[i]!(req, res, (err?: unknown) => (err ? next(err) : run(i + 1)));
    };
    run(0);
  });

  // JSON is parsed (and refused) as on the rest of /v1; a file comes as multipart.
  r.post('/media', ...auth, express.json({ limit: '1mb' }), (req, res, next) => void upload(req, res).catch(next));

  async function upload(req: Request, res: Response) {
    if (!req.is('multipart/form-data')) throw new HttpError(415, 'unsupported_media_type', 'send multipart/form-data with a `file` part');
    const bb = busboy({ headers: req.headers, limits: { files: 1, fields: 5, fileSize: MAX_BYTES.document + 1 } });
    const fields: Record<string, string> = {};
    const done = new Promise<z.infer<typeof uploadAnswerSchema>>((resolve, reject) => {
      let sawFile = false;
      bb.on('field', (name, value) => (fields[name] = value));
      bb.on('file', (_name, file, info) => {
        sawFile = true;
        const type = typeOfMime(info.mimeType);
        if (!type) {
          file.resume();
          return reject(new HttpError(415, 'unsupported_media_type', `${info.mimeType} is not a type Meta supports`));
        }
        const named = uploadFields.safeParse(fields);
        if (!named.success) {
          file.resume();
          return reject(new HttpError(400, 'invalid_upload', '`channelId` must be a channel id (a positive integer)', named.error.issues));
        }
        const { channelId } = named.data;
        const verify = new VerifyingStream({ maxBytes: MAX_BYTES[type] });
        file.on('error', (err) => verify.destroy(err));
        verify.on('error', () => file.resume());
        // Uploads keep their own key: their content address is known only once they are read. No
        // other write names it, and it is deleted when the put fails: written straight there.
        const key = `uploads/${randomUUID()}`;
        d.store
          .put(key, file.pipe(verify), info.mimeType, null, null, { unique: true })
          .then(async () => {
            const channel = await d.resolveChannel(channelId);
            if (!channel?.accessToken) throw new HttpError(400, 'unknown_channel', 'no channel with a token to upload for (name one with `channelId`)');
            const filename = info.filename || `upload.${info.mimeType.split('/')[1] ?? 'bin'}`;
            const obj = await d.store.get(key);
            const meta = await d.graph.upload(channel.phoneNumberId, channel.accessToken, { body: obj.body, mimeType: info.mimeType, filename });
            if (!meta.ok) throw new HttpError(502, 'graph_upload_failed', `Meta refused the upload: ${meta.error.title}`, { code: meta.error.code });
            // The row only once Meta holds the file: a refusal deletes the object, and leaves no row naming it.
            const row = await d.repo.insertUpload({ channelId: channel.id, metaId: meta.value.id, type, key, size: verify.count, mimeType: info.mimeType, sha256: verify.digest, filename });
            resolve({ id: meta.value.id, mediaId: row, type, mimeType: info.mimeType, size: verify.count, sha256: verify.digest });
          })
          .catch(async (err: unknown) => {
            await d.store.delete(key).catch(() => undefined);
            reject(err instanceof MediaCheckError ? new HttpError(413, 'too_large', `${err.message}: Meta's limit for ${type}`) : err);
          });
      });
      bb.on('error', reject);
      bb.on('close', () => sawFile || reject(new HttpError(400, 'invalid_upload', 'no `file` part')));
    });
    req.pipe(bb);
    res.status(201).json(await done);
  }
  return r;
}
