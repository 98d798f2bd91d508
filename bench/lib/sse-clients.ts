// A process holding many SSE clients of /v1/events (forked by bench/fanout.ts, which splits the
// clients over a few of these so that reading 1,000 streams is not one core's bottleneck).
// It records when each `message.created` event reaches each client (wall clock, the clock
// Postgres stamps rows with), then turns those into latencies from the rows' commit times.
// Each client is a raw TCP socket speaking HTTP/1.1 and scanning the bytes it receives for the
// events' ids: no HTTP parser, no string decoding, so the process's own cost per event stays small
// (it reports its CPU time, and the benchmark reports it beside the servers').
// IPC: { connect: { urls, count, token } } → { connected, failed }; { start } → { started } (CPU
// counted from here); { commits: [messageId, epochMs][] } → { report }; { close } → exits.
import net from 'node:net';

interface Client {
  socket: net.Socket;
  /** Ended by anything but our own close. */
  dropped: boolean;
  /** The ids of the events it received: which of the run's events it missed. */
  ids: number[];
}

const clients: Client[] = [];
/** messageId → arrival times (epoch ms, sub-millisecond) at every client that got it. */
const arrivals = new Map<number, number[]>();
let closing = false;
let cpuAtStart = process.cpuUsage();
/** Clients subscribe to `message.created` only; its JSON carries the message's id. */
const KEY = Buffer.from('"messageId":');
const HEAD_END = Buffer.from('\r\n\r\n');
const EVENT_END = Buffer.from('\n\n');
const now = () => performance.timeOrigin + performance.now();

/** Records every complete event of `bytes` (up to its last blank line); returns the rest. */
function scan(client: Client, bytes: Buffer, at: number): Buffer {
  const end = bytes.lastIndexOf(EVENT_END);
  if (end < 0) return bytes;
  // Chunked framing (hex sizes, CRLFs) sits between writes, never inside an event, and never
  // looks like the key, so the body is scanned as it comes.
  for (let i = bytes.indexOf(KEY); i >= 0 && i < end; i = bytes.indexOf(KEY, i + KEY.length)) {
    let id = 0;
    let j = i + KEY.length;
    for (let c = bytes[j]!; c >= 0x30 && c <= 0x39; c = bytes[++j]!) id = id * 10 + (c - 0x30);
    if (j === i + KEY.length) continue;
    let list = arrivals.get(id);
    if (!list) arrivals.set(id, (list = []));
    list.push(at);
    client.ids.push(id);
  }
  return bytes.subarray(end + EVENT_END.length);
}

function open(url: string, token: string): Promise<Client> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    // One socket per client, as browsers have.
    const socket = net.connect(Number(u.port), u.hostname);
    const client: Client = { socket, dropped: false, ids: [] };
    let head: Buffer | null = Buffer.alloc(0);
    let rest: Buffer = Buffer.alloc(0);
    socket.setNoDelay(true);
    socket.on('connect', () => socket.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nhost: ${u.host}\r\nauthorization: Bearer ${token}\r\naccept: text/event-stream\r\n\r\n`));
    socket.on('data', (chunk: Buffer) => {
      const at = now();
      if (head) {
        head = Buffer.concat([head, chunk]);
        const i = head.indexOf(HEAD_END);
        if (i < 0) return;
        const status = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
        chunk = head.subarray(i + HEAD_END.length);
        head = null;
        if (!/^HTTP\/1\.1 200 /.test(status)) {
          socket.destroy();
          reject(new Error(`${url}: ${status}`));
          return;
        }
        resolve(client);
      }
      rest = scan(client, rest.length ? Buffer.concat([rest, chunk]) : chunk, at);
    });
    socket.on('close', () => {
      if (!closing) client.dropped = true;
      reject(new Error(`${url}: closed before the response`));
    });
    socket.on('error', (err) => reject(err));
  });
}

/** How long a client may take to get the last events once every row is committed. */
const DRAIN_MS = 60_000;

/** Once every client has every event of `commits` (or the drain ran out): latencies and counts. */
async function report(commits: [number, number][]): Promise<void> {
  const run = new Set(commits.map(([id]) => id));
  // Per client, how many of the run's events it has, counted on from where the last look ended.
  const have = clients.map(() => ({ n: 0, seen: 0 }));
  const missing = () => {
    clients.forEach((c, i) => {
      const h = have[i]!;
      for (; h.seen < c.ids.length; h.seen++) if (run.has(c.ids[h.seen]!)) h.n++;
    });
    return clients.some((c, i) => !c.dropped && have[i]!.n < commits.length);
  };
  const deadline = Date.now() + DRAIN_MS;
  while (missing() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const cpu = process.cpuUsage(cpuAtStart);
  // Latencies in 0.1 ms bins: a million samples fit in a few thousand counters.
  const bins = new Map<number, number>();
  let n = 0;
  for (const [id, committedAt] of commits) {
    for (const at of arrivals.get(id) ?? []) {
      const bin = Math.max(0, Math.round((at - committedAt) * 10));
      bins.set(bin, (bins.get(bin) ?? 0) + 1);
      n++;
    }
  }
  process.send?.({
    report: {
      bins: [...bins], n, expected: commits.length * clients.length,
      dropped: clients.filter((c) => c.dropped).length,
      // Clients that missed at least one event of the run (they may also hold events of
      // messages whose webhooks were not acked, so counts alone do not tell).
      short: have.filter((h) => h.n < commits.length).length,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
    },
  });
}

process.on('message', (msg: { connect?: { urls: string[]; count: number; token: string }; start?: true; commits?: [number, number][]; close?: true }) => {
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
  if (msg.start) {
    cpuAtStart = process.cpuUsage();
    process.send?.({ started: true });
  }
  if (msg.commits) void report(msg.commits);
  if (msg.close) {
    closing = true;
    for (const c of clients) c.socket.destroy();
    process.disconnect?.();
    setTimeout(() => process.exit(0), 100).unref();
  }
});
