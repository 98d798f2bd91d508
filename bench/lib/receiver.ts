// An area's webhook endpoint for the benchmarks: a local keep-alive HTTP server that answers
// every request 200 at once and hands the request to the caller (its headers, its whole body and
// when it ended, performance.now() of this process) for the counting each bench needs.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface BenchReceiver {
  readonly url: string;
  close(): Promise<void>;
}

export async function startBenchReceiver(onRequest: (req: http.IncomingMessage, body: Buffer, at: number) => void): Promise<BenchReceiver> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      onRequest(req, Buffer.concat(chunks), performance.now());
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
    });
  });
  // Longer than the worker's undici pool keeps an idle socket (30 s): the receiver never closes one first.
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
