// Review proof (rev-media11): the "key of its own" of a media Meta declared no SHA-256 for
// (`media/<row id>`, written by s11-media WITHOUT a checksum) becomes the key of every later media
// of the same bytes: storedKeysOf() answers it for their declared SHA-256 (the row records the
// digest it counted). So a cut upload to that key (the proof in rev-media-own-key.test.ts) is not
// "named by nothing": it truncates what other media are served from.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { testEnv } from '../helpers/context.js';
import { bytesOf, receiveItem, startMediaStack, type MediaStack } from '../helpers/media.js';

let stack: MediaStack | undefined;
beforeAll(async () => {
  stack = await startMediaStack((d, g) => testEnv(d, { GRAPH_API_BASE_URL: g.url, MEDIA_BACKOFF_MS: '100', MEDIA_POLL_MS: '50' }));
});
afterAll(async () => {
  await stack?.stop();
});

it('a media with no declared sha256 is stored at media/<id>, and a later media of the same bytes is deduplicated onto that key', async () => {
  const { app, sim } = stack!;
  const bytes = bytesOf(50_000);
  const first = sim.media.add(bytes, 'image/jpeg');
  first.sha256 = ''; // Meta's metadata carries no sha256 for this one
  const a = await stack!.statusOf((await receiveItem(app.url, 'image', first)).wamid, 'stored');
  expect(a.storageKey).toBe(`media/${a.id}`);
  const second = sim.media.add(bytes, 'image/jpeg'); // same bytes, sha256 declared
  const b = await stack!.statusOf((await receiveItem(app.url, 'image', second)).wamid, 'stored');
  expect(b.id).not.toBe(a.id);
  // Shared: the key the branch writes without a checksum is the second media's key too.
  expect(b.storageKey).toBe(`media/${a.id}`);
}, 60_000);
