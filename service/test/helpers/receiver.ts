// A real HTTP receiver for forwarded events: verifies each request's Standard Webhooks
// signature with the reference library and answers what the test scripts (500, 410, a hang...).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface Received {
  readonly webhookId: string;
  readonly timestamp: string;
  readonly signature: string;
  readonly verified: boolean;
  readonly body: { type: string; timestamp: string; data: Record<string, unknown> & { conversationId: number | null; areaId: number; message?: Record<string, unknown> } };
  readonly answered: number;
  readonly at: number;
}

export type Answer = number | 'hang';

export interface Receiver {
  readonly url: string;
  readonly received: Received[];
  /** Requests answered 2xx, i.e. what the area got. */
  delivered(): Received[];
  /** Secrets the receiver accepts (any of them). */
  secrets: string[];
  /** What to answer next: the script is consumed, then `fallback`. */
  answer(script: Answer[], fallback?: Answer, headers?: Record<string, string>): void;
  close(): Promise<void>;
}

export async function startReceiver(secrets: string[] = []): Promise<Receiver> {
  let script: Answer[] = [];
  let fallback: Answer = 200;
  let extraHeaders: Record<string, string> = {};
  const received: Received[] = [];
  const hanging = new Set<http.ServerResponse>();
  const r: Receiver = {
    url: '',
    received,
    delivered: () => received.filter((x) => x.answered >= 200 && x.answered < 300),
    secrets,
    answer(s, f = 200, h = {}) {
      script = [...s];
      fallback = f;
      extraHeaders = h;
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const headers = { 'webhook-id': String(req.headers['webhook-id']), 'webhook-timestamp': String(req.headers['webhook-timestamp']), 'webhook-signature': String(req.headers['webhook-signature']) };
      const verified = r.secrets.some((s) => {
        try {
          new Webhook(s).verify(raw, headers);
          return true;
        } catch {
          return false;
        }
      });
      const next = script.length > 0 ? script.shift()! : fallback;
      const answered = next === 'hang' ? 0 : next;
      received.push({ webhookId: headers['webhook-id'], timestamp: headers['webhook-timestamp'], signature: headers['webhook-signature'], verified, body: JSON.parse(raw), answered, at: Date.now() });
      if (next === 'hang') {
        hanging.add(res);
        return;
      }
      res.writeHead(next, { 'content-type': 'text/plain', ...extraHeaders });
      res.end(next >= 200 && next < 300 ? 'ok' : `answer ${next}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (r as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return r;
}
