// Inbox pages are written from JSON the store builds, not with res.json: a client revalidating with
// If-None-Match must still get 304 Not Modified, not the whole page again, as from every JSON route.
import { request } from 'node:http';
import { expect, it } from 'vitest';
import { API_TOKEN } from '../helpers/context.js';
import { appForFile } from '../helpers/app.js';

const stack = appForFile('all');
const auth = { authorization: `Bearer ${API_TOKEN}` };

/** node:http, not fetch: fetch adds `cache-control: no-cache` to a conditional request, as a browser cache would not. */
function get(path: string, headers: Record<string, string>): Promise<{ status: number; etag: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request(`${stack.app.url}${path}`, { headers: { ...auth, ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, etag: res.headers.etag }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function revalidate(path: string): Promise<{ etag: string | null; second: number }> {
  const first = await get(path, {});
  expect(first.status).toBe(200);
  const again = await get(path, first.etag ? { 'if-none-match': first.etag } : {});
  return { etag: first.etag ?? null, second: again.status };
}

it('a JSON route answered by res.json gives an ETag and 304 on revalidation', async () => {
  const r = await revalidate('/v1/channels');
  expect(r.etag).not.toBeNull();
  expect(r.second).toBe(304);
});

it('the conversations list gives an ETag and 304 on revalidation', async () => {
  const r = await revalidate('/v1/conversations?limit=50');
  expect(r.etag).not.toBeNull();
  expect(r.second).toBe(304);
});
