// Meta's media endpoints: GET /{media-id} (a short-lived URL and what it holds), the download
// of that URL with the channel's token, and POST /{phone-number-id}/media (an upload).
import { randomBytes } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { request } from 'undici';
import { parseGraphError, type GraphError } from '../whatsapp/errors.js';

export interface MediaInfo {
  readonly url: string;
  readonly mimeType: string;
  readonly sha256: string | null;
  readonly fileSize: number | null;
}

export type GraphMediaResult<T> = { ok: true; value: T } | { ok: false; error: GraphError };

export class GraphMediaClient {
  constructor(private readonly opts: { baseUrl: string; version: string; timeoutMs: number }) {}

  private url(path: string) {
    return `${this.opts.baseUrl.replace(/\/$/, '')}/${this.opts.version}/${encodeURIComponent(path)}`;
  }

  async info(mediaId: string, token: string): Promise<GraphMediaResult<MediaInfo>> {
    const res = await request(this.url(mediaId), { headers: { authorization: `Bearer ${token}` }, headersTimeout: this.opts.timeoutMs, bodyTimeout: this.opts.timeoutMs });
    const body = await res.body.json().catch(() => null);
    if (res.statusCode !== 200) return { ok: false, error: parseGraphError(res.statusCode, body) };
    const b = body as { url?: unknown; mime_type?: unknown; sha256?: unknown; file_size?: unknown };
    if (typeof b?.url !== 'string') return { ok: false, error: parseGraphError(502, { error: { message: 'media metadata without url' } }) };
    return { ok: true, value: { url: b.url, mimeType: typeof b.mime_type === 'string' ? b.mime_type : 'application/octet-stream', sha256: typeof b.sha256 === 'string' ? b.sha256 : null, fileSize: Number.isFinite(Number(b.file_size)) && b.file_size !== undefined ? Number(b.file_size) : null } };
  }

  /** The bytes of a media URL; a non-200 answer is returned with its status, its body drained. */
  async download(url: string, token: string): Promise<{ ok: true; body: Readable } | { ok: false; status: number }> {
    const res = await request(url, { headers: { authorization: `Bearer ${token}` }, headersTimeout: this.opts.timeoutMs, bodyTimeout: this.opts.timeoutMs });
    if (res.statusCode !== 200) {
      await res.body.dump();
      return { ok: false, status: res.statusCode };
    }
    return { ok: true, body: res.body };
  }

  /** Uploads a file to Meta as multipart form data, streamed from `file`. */
  async upload(phoneNumberId: string, token: string, file: { body: Readable; mimeType: string; filename: string }): Promise<GraphMediaResult<{ id: string }>> {
    const boundary = `----wa-router-${randomBytes(12).toString('hex')}`;
    const field = (name: string, value: string) => `--${boundary}\r\ncontent-disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
    const head = field('messaging_product', 'whatsapp') + field('type', file.mimeType) +
      `--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="${file.filename.replace(/["\r\n]/g, '_')}"\r\ncontent-type: ${file.mimeType}\r\n\r\n`;
    const body = new PassThrough();
    body.write(head);
    file.body.on('error', (err) => body.destroy(err));
    file.body.on('end', () => body.end(`\r\n--${boundary}--\r\n`));
    file.body.pipe(body, { end: false });
    const res = await request(this.url(phoneNumberId) + '/media', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': `multipart/form-data; boundary=${boundary}` },
      body,
      headersTimeout: this.opts.timeoutMs,
    });
    const answer = await res.body.json().catch(() => null);
    if (res.statusCode !== 200) return { ok: false, error: parseGraphError(res.statusCode, answer) };
    const id = (answer as { id?: unknown } | null)?.id;
    return typeof id === 'string' ? { ok: true, value: { id } } : { ok: false, error: parseGraphError(502, { error: { message: 'upload answer without id' } }) };
  }
}
