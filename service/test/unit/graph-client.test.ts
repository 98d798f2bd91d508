// Which failed Graph calls may have reached Meta: against real sockets on loopback.
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { GraphClient } from '../../src/whatsapp/graph-client.js';

const servers: net.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    if (s instanceof http.Server) s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function listen(server: net.Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
const send = (baseUrl: string, timeoutMs = 300) => new GraphClient({ baseUrl, version: 'v23.0', timeoutMs }).sendMessage('1', 't', { messaging_product: 'whatsapp', to: '1', type: 'text', text: { body: 'x' } });

it('a refused connection never sent anything: known outcome', async () => {
  const url = await listen(net.createServer());
  await new Promise((r) => servers.pop()!.close(r));
  // A long timeout: on a loaded machine a 300 ms one can fire before the refusal is seen, which
  // (rightly) counts as an unknown outcome.
  const res = await send(url, 10_000);
  expect(res).toMatchObject({ ok: false, outcomeUnknown: false, error: { httpStatus: 0 } });
});

it('a timeout after the request was written: unknown outcome', async () => {
  const url = await listen(http.createServer(() => undefined));
  expect(await send(url)).toMatchObject({ ok: false, outcomeUnknown: true, error: { httpStatus: 0 } });
});

it('a reset after the request was written: unknown outcome', async () => {
  const url = await listen(http.createServer((req) => req.socket.destroy()));
  expect(await send(url)).toMatchObject({ ok: false, outcomeUnknown: true });
});

it('a success answer without a wamid: unknown outcome; an error answer: known', async () => {
  let status = 200;
  const url = await listen(http.createServer((_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(status === 200 ? '{"messaging_product":"whats' : JSON.stringify({ error: { message: 'x', code: 131000 } }));
  }));
  expect(await send(url)).toMatchObject({ ok: false, outcomeUnknown: true, error: { httpStatus: 200 } });
  status = 500;
  expect(await send(url)).toMatchObject({ ok: false, outcomeUnknown: false, error: { httpStatus: 500, code: 131000 } });
});
