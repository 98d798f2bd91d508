// A Server-Sent Events client on fetch, as a browser's EventSource reads /v1/events.
export interface SseEvent {
  readonly id: string;
  readonly event: string;
  readonly data: Record<string, unknown>;
}

export interface SseClient {
  readonly events: SseEvent[];
  readonly ready: Promise<Response>;
  /** Resolves when the server ends the stream (or the client aborted it). */
  readonly ended: Promise<void>;
  close(): Promise<void>;
}

/** Opens `/v1/events<query>` on `baseUrl` and collects parsed events until closed. */
export function openSse(baseUrl: string, query: string): SseClient {
  const events: SseEvent[] = [];
  const ctrl = new AbortController();
  const ready = fetch(`${baseUrl}/v1/events${query}`, { signal: ctrl.signal });
  const ended = ready.then(async (res) => {
    if (res.status !== 200 || !res.body) return;
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const fields = Object.fromEntries(block.split('\n').filter((l) => !l.startsWith(':') && l.includes(': ')).map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)]));
          if (fields.data) events.push({ id: fields.id!, event: fields.event!, data: JSON.parse(fields.data) });
        }
      }
    } catch {
      // aborted
    }
  }, () => undefined);
  return { events, ready, ended, close: async () => { ctrl.abort(); await ended; } };
}
