// Meta's media endpoints, simulated: GET /{version}/{media-id} answers the metadata with a URL
// that needs the bearer token and expires (5 minutes at Meta), the bytes' real SHA-256 and
// size; expired or unknown media answer 404; POST /{version}/{phone-number-id}/media takes a
// multipart upload (`file`, `type`, `messaging_product`) and answers `{ id }`. Downloads can be
// throttled (slow downloads) and the metadata can fail with 500s, to test retries.
import { createHash, randomBytes, randomInt } from 'node:crypto';
import type http from 'node:http';
import busboy from 'busboy';

export interface SimMediaConfig {
  /** Lifetime of a media URL. @default 300000 (Meta: 5 minutes) */
  mediaUrlTtlMs: number;
  /** Download speed limit, bytes per second; 0 is unlimited. @default 0 */
  mediaBytesPerSecond: number;
  /** The next N metadata requests answer 500 (code 131000). @default 0 */
  mediaMetadataFailures: number;
  /** The next N URLs handed out have expired by the time they are fetched. @default 0 */
  mediaExpiredUrls: number;
}

export const DEFAULT_MEDIA_CONFIG: SimMediaConfig = { mediaUrlTtlMs: 300_000, mediaBytesPerSecond: 0, mediaMetadataFailures: 0, mediaExpiredUrls: 0 };

export interface SimMediaItem {
  readonly id: string;
  readonly bytes: Buffer;
  readonly mime: string;
  /** What the metadata declares; the real hash unless a test lies on purpose. */
  sha256: string;
  fileSize: number;
  /** Meta deleted it (it keeps media for a limited time). */
  expired: boolean;
  /** Bytes served by downloads of it so far. */
  served: number;
  /** Uploaded through POST /{phone-number-id}/media by this number. */
  readonly uploadedBy?: string;
  readonly filename?: string;
}

type Fail = (code: number, details?: string, status?: number) => void;
type Send = (status: number, body: unknown) => void;

export class SimMedia {
  readonly items = new Map<string, SimMediaItem>();
  private readonly urls = new Map<string, { id: string; expiresAt: number }>();
  /** Metadata requests answered per media id. */
  readonly metadataRequests = new Map<string, number>();

  constructor(
    private readonly config: SimMediaConfig,
    private readonly tokenValid: (token: string, phoneNumberId?: string) => boolean,
    private readonly baseUrl: () => string,
  ) {}

  /** A media item as if a customer sent it; its id goes in a webhook. */
  add(bytes: Buffer, mime: string, opts: { id?: string } = {}): SimMediaItem {
    const id = opts.id ?? `${randomInt(1e5, 9e5)}${randomInt(1e9, 1e10)}`;
    const item: SimMediaItem = { id, bytes, mime, sha256: createHash('sha256').update(bytes).digest('hex'), fileSize: bytes.length, expired: false, served: 0 };
    this.items.set(id, item);
    return item;
  }

  /** Handles a media request; false when the request is not one. */
  async handle(req: http.IncomingMessage, res: http.ServerResponse, parts: string[], send: Send, fail: Fail): Promise<boolean> {
    const token = (req.headers.authorization ?? '').replace(/^Bearer\s+/i, '');
    if (req.method === 'GET' && parts[0] === '_media' && parts[1]) {
      const u = this.urls.get(parts[1]);
      if (!this.tokenValid(token)) {
        fail(190);
        return true;
      }
      const item = u && u.expiresAt > Date.now() ? this.items.get(u.id) : undefined;
      if (!item || item.expired) {
        send(404, 'Not Found');
        return true;
      }
      await this.stream(res, item);
      return true;
    }
    const versioned = parts.length >= 2 && /^v\d+\.\d+$/.test(parts[0]!);
    if (versioned && req.method === 'GET' && parts.length === 2) {
      if (!this.tokenValid(token)) {
        fail(190);
        return true;
      }
      if (this.config.mediaMetadataFailures > 0) {
        this.config.mediaMetadataFailures--;
        {
        fail(131000);
        return true;
      }
      }
      const item = this.items.get(parts[1]!);
      if (!item || item.expired) {
        fail(100, `Unsupported get request. Object with ID '${parts[1]}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.`, 404);
        return true;
      }
      const key = randomBytes(16).toString('hex');
      const expired = this.config.mediaExpiredUrls > 0;
      if (expired) this.config.mediaExpiredUrls--;
      this.urls.set(key, { id: item.id, expiresAt: expired ? 0 : Date.now() + this.config.mediaUrlTtlMs });
      this.metadataRequests.set(item.id, (this.metadataRequests.get(item.id) ?? 0) + 1);
      send(200, { messaging_product: 'whatsapp', url: `${this.baseUrl()}/_media/${key}?mid=${item.id}&ext=${Math.floor(Date.now() / 1000)}`, mime_type: item.mime, sha256: item.sha256, file_size: item.fileSize, id: item.id });
      return true;
    }
    if (versioned && req.method === 'POST' && parts.length === 3 && parts[2] === 'media') {
      if (!this.tokenValid(token, parts[1])) {
        fail(190);
        return true;
      }
      await this.upload(req, parts[1]!, send, fail);
      return true;
    }
    return false;
  }

  private async stream(res: http.ServerResponse, item: SimMediaItem): Promise<void> {
    res.writeHead(200, { 'content-type': item.mime, 'content-length': item.bytes.length });
    const rate = this.config.mediaBytesPerSecond;
    const chunk = rate > 0 ? Math.max(1024, Math.floor(rate / 20)) : 256 * 1024;
    for (let at = 0; at < item.bytes.length && !res.destroyed; at += chunk) {
      const piece = item.bytes.subarray(at, at + chunk);
      item.served += piece.length;
      if (!res.write(piece)) {
        await new Promise<void>((resolve) => {
          const go = () => {
            res.off('drain', go).off('close', go);
            resolve();
          };
          res.on('drain', go).on('close', go);
        });
      }
      if (rate > 0) await new Promise((r) => setTimeout(r, (piece.length / rate) * 1000));
    }
    res.end();
  }

  private upload(req: http.IncomingMessage, phoneNumberId: string, send: Send, fail: Fail): Promise<void> {
    return new Promise((resolve) => {
      const fields: Record<string, string> = {};
      let file: { bytes: Buffer; mime: string; filename: string } | undefined;
      let bb: busboy.Busboy;
      try {
        bb = busboy({ headers: req.headers });
      } catch {
        fail(100, 'multipart/form-data expected');
        return resolve();
      }
      bb.on('field', (name, value) => (fields[name] = value));
      bb.on('file', (_name, stream, info) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => (file = { bytes: Buffer.concat(chunks), mime: info.mimeType, filename: info.filename ?? 'file' }));
      });
      bb.on('close', () => {
        const f = file;
        if (fields.messaging_product !== 'whatsapp' || !f || !fields.type) fail(100, 'file, type and messaging_product=whatsapp are required');
        else {
          const item = this.add(f.bytes, fields.type);
          this.items.set(item.id, { ...item, uploadedBy: phoneNumberId, filename: f.filename });
          send(200, { id: item.id });
        }
        resolve();
      });
      bb.on('error', () => {
        fail(100, 'malformed multipart body');
        resolve();
      });
      req.pipe(bb);
    });
  }
}
