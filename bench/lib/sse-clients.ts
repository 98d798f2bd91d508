// A process holding many SSE clients of /v1/events (forked by bench/fanout.ts, which splits the
// clients over a few of these so that reading 1,000 streams is not one core's bottleneck).
// It records when each `message.created` event reaches each client (wall clock, the clock
// Postgres stamps rows with), then turns those into latencies from the rows' commit times.
// IPC: { connect: { urls, count, token } } → { connected, failed }; { commits: [messageId, epochMs][] }
// → { report }; { close } → exits.
import http from 'node:http';

interface Client {
  req: http.ClientRequest;
  /** Ended by anything but our own close. */
  dropped: boolean;
  received: number;
}

const clients: Client[] = [];
/** messageId → arrival times (epoch ms, sub-millisecond) at every client that got it. */
const arrivals = new Map<number, number[]>();
let closing = false;
/** Clients subscribe to `message.created` only; its JSON carries the message's id. */
const KEY = '"messageId":';
const now = () => performance.timeOrigin + performance.now();

function open(url: string, token: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client: Client = { req: undefined as unknown as http.ClientRequest, dropped: false, received: 0 };
    // One socket per client, as browsers have: no agent pooling.
    client.req = http.get(url, { agent: false, headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`${url}: ${res.statusCode}`));
        return;
      }
      res.setEncoding('utf8');
      let buffer = '';
      let ready = false;
      res.on('data', (chunk: string) => {
        const at = now();
        buffer += chunk;
        const end = buffer.lastIndexOf('\n\n');
        if (end < 0) return;
        const complete = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!ready) {
          ready = true;
          resolve(client);
        }
        // indexOf, not split and regex: at 200 events/s to 500 clients this loop is the process's work.
        for (let i = complete.indexOf(KEY); i >= 0; i = complete.indexOf(KEY, i + KEY.length)) {
          const id = Number.parseInt(complete.slice(i + KEY.length, i + KEY.length + 20), 10);
          if (!Number.isSafeInteger(id)) continue;
          let list = arrivals.get(id);
          if (!list) arrivals.set(id, (list = []));
          list.push(at);
          client.received++;
        }
      });
      res.on('close', () => {
        if (!closing) client.dropped = true;
      });
    });
    client.req.on('error', (err) => {
      if (!closing) client.dropped = true;
      reject(err);
    });
  });
}

process.on('message', (msg: { connect?: { urls: string[]; count: number; token: string }; commits?: [number, number][]; close?: true }) => {
  if (msg.connect) {
    const { urls, count, token } = msg.connect;
    void (async () => {
      let failed = 0;
      // In waves: a thousand SYNs at once overflow a listen backlog.
      for (let i = 0; i < count; i += 50) {
        const wave = await Promise.allSettled(Array.from({ length: Math.min(50, count - i) }, (_, j) => open(urls[(i + j) % urls.length]!, token)));
        for (const r of wave) {
          if (r.status === 'fulfilled') clients.push(r.value);
          else failed++;
        }
      }
      process.send?.({ connected: clients.length, failed });
    })();
  }
  if (msg.commits) {
    // Latencies in 0.1 ms bins: a million samples fit in a few thousand counters.
    const bins = new Map<number, number>();
    let n = 0;
    for (const [id, committedAt] of msg.commits) {
      for (const at of arrivals.get(id) ?? []) {
        const bin = Math.max(0, Math.round((at - committedAt) * 10));
        bins.set(bin, (bins.get(bin) ?? 0) + 1);
        n++;
      }
    }
    process.send?.({
      report: {
        bins: [...bins], n, expected: msg.commits.length * clients.length,
        dropped: clients.filter((c) => c.dropped).length,
        // Clients that missed at least one event of the run.
        short: clients.filter((c) => c.received < msg.commits!.length).length,
      },
    });
  }
  if (msg.close) {
    closing = true;
    for (const c of clients) c.req.destroy();
    process.disconnect?.();
    setTimeout(() => process.exit(0), 100).unref();
  }
});
