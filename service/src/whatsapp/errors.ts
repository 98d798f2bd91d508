// Meta's Graph API error codes → what the sender does about them.

export type ErrorAction =
  /** Try again later with backoff; counts toward the channel's circuit breaker. */
  | 'retry'
  /** Meta's own pacing (throughput, pair rate): wait and try again; not a sign of an outage. */
  | 'throttle'
  /** Will never succeed as sent: the message fails with the error. */
  | 'permanent'
  /** The channel cannot send at all (token, block): pause it, keep its messages waiting. */
  | 'pause_channel';

export interface GraphError {
  readonly httpStatus: number;
  readonly code: number | null;
  readonly subcode: number | null;
  readonly title: string;
  readonly details: string | null;
  readonly fbtraceId: string | null;
}

const THROTTLE = new Set([130429, 131056, 4, 80007]);
const RETRY = new Set([1, 2, 131000, 131016, 133004]);
const PAUSE = new Set([190, 368, 131031]);

export function classifyGraphError(e: Pick<GraphError, 'httpStatus' | 'code'>): ErrorAction {
  const code = e.code;
  if (code !== null) {
    if (PAUSE.has(code)) return 'pause_channel';
    if (THROTTLE.has(code)) return 'throttle';
    if (RETRY.has(code)) return 'retry';
  }
  // No usable code: the status decides (5xx and 429 are Meta's "later").
  if (e.httpStatus >= 500 || e.httpStatus === 429 || e.httpStatus === 0) return 'retry';
  return 'permanent';
}

/** Advice for a caller about a permanent failure, where Meta's title alone does not say what to do. */
export function errorHint(code: number | null): string | undefined {
  if (code === 131047) return 'more than 24 hours since the customer last wrote: send an approved template instead';
  if (code === 131026) return 'the recipient cannot receive this message (not on WhatsApp, old app, or has not accepted terms)';
  if (code === 131062) return 'this message cannot go to a business-scoped user id (e.g. one-tap, zero-tap and copy-code authentication templates): send it to the phone number';
  if (code !== null && code >= 132000 && code < 133000) return 'the template or its parameters do not match an approved template';
  return undefined;
}

/** Reads Meta's error body ({ error: { message, type, code, error_subcode, error_data: { details }, fbtrace_id } }). */
export function parseGraphError(httpStatus: number, body: unknown): GraphError {
  const err = typeof body === 'object' && body !== null && 'error' in body ? (body as { error: Record<string, unknown> }).error : undefined;
  const data = err && typeof err.error_data === 'object' && err.error_data !== null ? (err.error_data as Record<string, unknown>) : undefined;
  return {
    httpStatus,
    code: typeof err?.code === 'number' ? err.code : null,
    subcode: typeof err?.error_subcode === 'number' ? err.error_subcode : null,
    title: typeof err?.message === 'string' ? err.message : `HTTP ${httpStatus}`,
    details: typeof data?.details === 'string' ? data.details : null,
    fbtraceId: typeof err?.fbtrace_id === 'string' ? err.fbtrace_id : null,
  };
}
