// The Graph API client: keep-alive connections (Node's fetch pools them per origin),
// a timeout on every call, Meta's error body parsed into a GraphError.
import { parseGraphError, type GraphError } from './errors.js';

export interface GraphClientOptions {
  readonly baseUrl: string;
  readonly version: string;
  /** @defaultValue 10000 */
  readonly timeoutMs?: number;
}

/**
 * `outcomeUnknown`: the request may have reached Meta (a timeout, a reset after it was
 * written, a success answer we could not read), so Meta may have accepted the message.
 */
export type SendResult = { ok: true; wamid: string } | { ok: false; error: GraphError; outcomeUnknown: boolean };

// Failures before a connection existed: the request never left, so it is safe to send again.
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

export class GraphClient {
  constructor(private readonly opts: GraphClientOptions) {}

  async sendMessage(phoneNumberId: string, accessToken: string, payload: Record<string, unknown>): Promise<SendResult> {
    const answer = await this.post(phoneNumberId, accessToken, payload);
    if (!answer.ok) return answer;
    const { res, body } = answer;
    if (res.ok) {
      const id = (body as { messages?: { id?: unknown }[] } | null)?.messages?.[0]?.id;
      if (typeof id === 'string') return { ok: true, wamid: id };
      return { ok: false, outcomeUnknown: true, error: { httpStatus: res.status, code: null, subcode: null, title: 'Graph API answered without messages[0].id', details: null, fbtraceId: null } };
    }
    return { ok: false, outcomeUnknown: false, error: parseGraphError(res.status, body) };
  }

  /** Meta's read receipt: the message (and every earlier one) shows read, blue ticks. */
  async markRead(phoneNumberId: string, accessToken: string, wamid: string): Promise<{ ok: true } | { ok: false; error: GraphError }> {
    const answer = await this.post(phoneNumberId, accessToken, { messaging_product: 'whatsapp', status: 'read', message_id: wamid });
    if (!answer.ok) return answer;
    return answer.res.ok ? { ok: true } : { ok: false, error: parseGraphError(answer.res.status, answer.body) };
  }

  private async post(phoneNumberId: string, accessToken: string, payload: Record<string, unknown>): Promise<{ ok: true; res: Response; body: unknown } | { ok: false; error: GraphError; outcomeUnknown: boolean }> {
    const url = `${this.opts.baseUrl.replace(/\/$/, '')}/${this.opts.version}/${encodeURIComponent(phoneNumberId)}/messages`;
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(payload),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000),
      });
    } catch (err) {
      // Status 0. A refused connection never sent anything; a timeout or a reset may come
      // after Meta took the request.
      const code = (err as { cause?: { code?: unknown } }).cause?.code;
      return {
        ok: false,
        outcomeUnknown: !(typeof code === 'string' && NOT_SENT.has(code)),
        error: { httpStatus: 0, code: null, subcode: null, title: err instanceof Error ? err.message : String(err), details: null, fbtraceId: null },
      };
    }
    return { ok: true, res, body: await res.json().catch(() => null) };
  }
}
