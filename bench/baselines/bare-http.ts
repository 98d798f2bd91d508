// Baseline server: bare node:http reading the body and answering 200. Nothing is faster
// in Node, so the webhook's figure is reported as a share of this one.
import http from 'node:http';

const port = Number(process.argv[2] ?? 0);
const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': 19 });
    res.end('{"status":"queued"}');
  });
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => process.send?.('ready'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
