// The messages page's media part, written from Postgres's text, must equal the one GET /v1/messages/:id builds with toView, for a message whose media
// row exists (stored, failed). conversation-json covers only a media with no row. Mutation it
// catches (that no other test does): "mediaId":null, "status":null, "url":null in writeMessageItem.
import { beforeAll, expect, it } from 'vitest';
import { API_TOKEN } from '../helpers/context.js';
import { appForFile } from '../helpers/app.js';

const stack = appForFile('all');
const auth = { authorization: `Bearer ${API_TOKEN}` };
let conv = 0;

beforeAll(async () => {
  const db = stack.db.pool;
  const { rows: [ch] } = await db.query<{ id: number }>("INSERT INTO channels (phone_number_id) VALUES ('media-item-1') RETURNING id");
  const { rows: [ct] } = await db.query<{ id: number }>("INSERT INTO contacts (wa_id) VALUES ('5511900000777') RETURNING id");
  const { rows: [c] } = await db.query<{ id: number }>('INSERT INTO conversations (channel_id, contact_id) VALUES ($1, $2) RETURNING id', [ch!.id, ct!.id]);
  conv = c!.id;
  await db.query(
    `INSERT INTO media (channel_id, meta_id, origin, type, status, mime_type, sha256, error_code) VALUES
       ($1, 'meta-stored', 'inbound', 'image', 'stored', 'image/jpeg', 'abc', NULL),
       ($1, 'meta-failed', 'inbound', 'image', 'failed', 'image/jpeg', NULL, 'too_large')`,
    [ch!.id],
  );
  await db.query(
    `INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, source, type, raw, wa_timestamp, status, media_id, media_mime_type)
     VALUES ('wamid.mi-1', $1, $2, $3, 'inbound', 'live', 'image', '{}', '2026-11-30 10:00:00+00', 'received', 'meta-stored', 'image/jpeg'),
            ('wamid.mi-2', $1, $2, $3, 'inbound', 'live', 'image', '{}', '2026-11-30 09:00:00+00', 'received', 'meta-failed', 'image/jpeg')`,
    [ch!.id, conv, ct!.id],
  );
});

it("writes a stored or failed media's row id, status, error and link on the messages page as GET /v1/messages/:id shows them", async () => {
  const page = await (await fetch(`${stack.app.url}/v1/conversations/${conv}/messages?limit=10`, { headers: auth })).json() as { data: { id: number; media: Record<string, unknown> }[] };
  expect(page.data).toHaveLength(2);
  for (const item of page.data) {
    const one = await (await fetch(`${stack.app.url}/v1/messages/${item.id}`, { headers: auth })).json() as { media: Record<string, unknown> };
    // The link's expiry (and so its signature) moves with the clock: compare its path.
    const bare = (m: Record<string, unknown>) => ({ ...m, url: typeof m.url === 'string' ? m.url.split('?')[0] : m.url });
    expect(bare(item.media)).toEqual(bare(one.media));
    expect(item.media.mediaId).toEqual(expect.any(Number));
  }
  expect(page.data[0]!.media).toMatchObject({ status: 'stored', error: null, url: expect.stringContaining(`/${page.data[0]!.id}`) });
  expect(page.data[1]!.media).toMatchObject({ status: 'failed', error: 'too_large', url: null });
});
