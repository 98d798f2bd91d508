// The inbox writes a conversation's JSON straight from Postgres's text of its row (no object per
// row, no JSON.stringify of the page). What it writes must be exactly what serializing the view
// would give: valid JSON whatever the strings hold, numbers as numbers, times as the API's.
import { beforeAll, expect, it } from 'vitest';
import { API_TOKEN } from '../helpers/context.js';
import { appForFile } from '../helpers/app.js';

const stack = appForFile('all');
const auth = { authorization: `Bearer ${API_TOKEN}` };
/** Everything JSON must escape or keep: quotes, backslashes, control characters, line separators, astral characters. */
const TRICKY = 'Zé "Aspas" \\ barra\nlinha\ttab \u0001 \u2028\u2029 </script> 😀';

let ids: { plain: number; tricky: number; area: number };

beforeAll(async () => {
  const db = stack.db.pool;
  const { rows: [ch] } = await db.query<{ id: number }>("INSERT INTO channels (phone_number_id) VALUES ('json-1') RETURNING id");
  const { rows: [area] } = await db.query<{ id: number }>("INSERT INTO areas (name, webhook_url) VALUES ('json area', 'http://127.0.0.1:9/') RETURNING id");
  const { rows: contacts } = await db.query<{ id: number }>(
    "INSERT INTO contacts (wa_id, profile_name, user_id, username) VALUES ('5511900000001', $1, 'BR.J1', $1), ('5511900000002', NULL, NULL, NULL) RETURNING id",
    [TRICKY],
  );
  const { rows: convs } = await db.query<{ id: number }>(
    `INSERT INTO conversations (channel_id, contact_id, last_message_at, last_inbound_at, unread_count, status, assignee, created_at, updated_at)
     VALUES ($1, $2, '2026-11-30 14:01:28.123456+00', '2026-11-30 14:01:28.123456+00', 2, 'closed', $3, '2026-01-02 03:04:05+00', '2026-11-30 14:01:28.9+00'),
            ($1, $4, NULL, NULL, 0, 'open', NULL, '2026-01-02 03:04:05.000001-03', '2026-01-02 03:04:05.000001-03')
     RETURNING id`,
    [ch!.id, contacts[0]!.id, TRICKY, contacts[1]!.id],
  );
  const { rows: msgs } = await db.query<{ id: number }>(
    `INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, source, type, body, raw, wa_timestamp, status)
     VALUES ('wamid.json-in', $1, $2, $3, 'inbound', 'live', 'text', $4, '{}', '2026-11-30 14:01:28.123456+00', 'received'),
            (NULL, $1, $2, $3, 'outbound', 'api', 'image', NULL, '{}', '2026-11-29 10:00:00+00', 'pending')
     RETURNING id`,
    [ch!.id, convs[0]!.id, contacts[0]!.id, TRICKY],
  );
  await db.query('UPDATE conversations SET last_message_id = $2, last_agent_message_id = $3 WHERE id = $1', [convs[0]!.id, msgs[0]!.id, msgs[1]!.id]);
  // Older messages carrying every optional part of a message item.
  await db.query(
    `INSERT INTO messages (wamid, channel_id, conversation_id, contact_id, direction, source, type, body, raw, wa_timestamp, status, media_id, media_mime_type, media_sha256, media_filename,
                          latitude, longitude, reply_to_wamid, reaction_to_wamid, reaction_emoji, interactive_reply_id, forwarded, referral, sent_at, failed_at, error_code, error_title, error_details)
     VALUES ('wamid.json-doc', $1, $2, $3, 'outbound', 'api', 'document', $4, '{}', '2026-11-28 10:00:00.5+00', 'failed', 'meta-media-1', 'application/pdf', 'c2hh', $4,
             NULL, NULL, 'wamid.json-in', NULL, NULL, NULL, false, NULL, '2026-11-28 10:00:01+00', '2026-11-28 10:00:02.25+00', 131026, $4, NULL),
            ('wamid.json-loc', $1, $2, $3, 'inbound', 'live', 'location', NULL, '{}', '2026-11-27 10:00:00+00', 'received', NULL, NULL, NULL, NULL,
             -23.5505199, 1e-7, NULL, NULL, NULL, 'opt-"1"', true, '{"source_url": "https://fb.me/x", "headline": "Oferta \\"já\\"", "n": 1.50}', NULL, NULL, NULL, NULL, NULL),
            ('wamid.json-react', $1, $2, $3, 'inbound', 'live', 'reaction', NULL, '{}', '2026-11-26 10:00:00+00', 'received', NULL, NULL, NULL, NULL,
             NULL, NULL, NULL, 'wamid.json-in', '😀', NULL, false, NULL, NULL, NULL, NULL, NULL, NULL)`,
    [ch!.id, convs[0]!.id, contacts[0]!.id, TRICKY],
  );
  await db.query("INSERT INTO conversation_routes (conversation_id, state, area_id, assigned_at, assigned_by) VALUES ($1, 'assigned', $2, '2026-11-30 14:02:00.5+00', 'api')", [convs[0]!.id, area!.id]);
  ids = { tricky: convs[0]!.id, plain: convs[1]!.id, area: area!.id };
});

const get = async (path: string) => {
  const res = await fetch(`${stack.app.url}${path}`, { headers: auth });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
  return res.text();
};

it('writes the list and one conversation as JSON.stringify would, strings, nulls, numbers and times included', async () => {
  const tricky = {
    id: ids.tricky,
    channelId: expect.any(Number),
    contact: { id: expect.any(Number), waId: '5511900000001', profileName: TRICKY, userId: 'BR.J1', username: TRICKY },
    lastMessage: { id: expect.any(Number), wamid: 'wamid.json-in', direction: 'inbound', type: 'text', body: TRICKY, status: 'received', timestamp: '2026-11-30T14:01:28.123Z' },
    lastAgentMessage: { id: expect.any(Number), wamid: null, direction: 'outbound', type: 'image', body: null, status: 'pending', timestamp: '2026-11-29T10:00:00.000Z' },
    unreadCount: 2,
    lastMessageAt: '2026-11-30T14:01:28.123Z',
    lastInboundAt: '2026-11-30T14:01:28.123Z',
    status: 'closed',
    assignee: TRICKY,
    route: { state: 'assigned', areaId: ids.area, assignedAt: '2026-11-30T14:02:00.500Z' },
    createdAt: '2026-01-02T03:04:05.000Z',
    updatedAt: '2026-11-30T14:01:28.900Z',
  };
  const plain = {
    id: ids.plain, channelId: expect.any(Number), contact: { id: expect.any(Number), waId: '5511900000002', profileName: null, userId: null, username: null },
    lastMessage: null, lastAgentMessage: null, unreadCount: 0, lastMessageAt: null, lastInboundAt: null, status: 'open', assignee: null,
    route: { state: 'menu', areaId: null, assignedAt: null }, createdAt: '2026-01-02T06:04:05.000Z', updatedAt: '2026-01-02T06:04:05.000Z',
  };
  const first = await get('/v1/conversations?limit=1');
  const rest = await get(`/v1/conversations?limit=1&cursor=${JSON.parse(first).nextCursor}`);
  const one = await get(`/v1/conversations/${ids.tricky}`);
  for (const text of [first, rest, one]) expect(text).toBe(JSON.stringify(JSON.parse(text)));
  expect(JSON.parse(first)).toEqual({ data: [tricky], nextCursor: expect.any(String) });
  expect(JSON.parse(rest)).toEqual({ data: [plain], nextCursor: null });
  expect(JSON.parse(one)).toEqual(tricky);
  expect(JSON.parse(await get('/v1/conversations?limit=5&q=nobody-at-all'))).toEqual({ data: [], nextCursor: null });
});

it("writes a conversation's messages page as JSON.stringify would: media, location, reaction, referral, errors", async () => {
  const first = await get(`/v1/conversations/${ids.tricky}/messages?limit=3`);
  const rest = await get(`/v1/conversations/${ids.tricky}/messages?limit=3&cursor=${JSON.parse(first).nextCursor}`);
  for (const text of [first, rest]) expect(text).toBe(JSON.stringify(JSON.parse(text)));
  const items = [...JSON.parse(first).data, ...JSON.parse(rest).data];
  expect(JSON.parse(rest).nextCursor).toBeNull();
  expect(items.map((m: { wamid: string | null }) => m.wamid)).toEqual(['wamid.json-in', null, 'wamid.json-doc', 'wamid.json-loc', 'wamid.json-react']);
  const contact = { id: expect.any(Number), waId: '5511900000001', profileName: TRICKY, userId: 'BR.J1', username: TRICKY };
  expect(items[0]).toEqual({
    id: expect.any(Number), wamid: 'wamid.json-in', channelId: expect.any(Number), conversationId: ids.tricky, contact, direction: 'inbound', source: 'live', type: 'text', body: TRICKY,
    media: null, location: null, replyToWamid: null, reaction: null, interactiveReplyId: null, forwarded: false, referral: null, status: 'received',
    timestamp: '2026-11-30T14:01:28.123Z', sentAt: null, deliveredAt: null, readAt: null, failedAt: null, error: null, createdAt: expect.any(String),
  });
  expect(items[2]).toMatchObject({
    type: 'document', body: TRICKY, replyToWamid: 'wamid.json-in', status: 'failed', timestamp: '2026-11-28T10:00:00.500Z', sentAt: '2026-11-28T10:00:01.000Z', failedAt: '2026-11-28T10:00:02.250Z',
    media: { id: 'meta-media-1', mediaId: null, mimeType: 'application/pdf', sha256: 'c2hh', filename: TRICKY, status: null, error: null, url: null },
    error: { code: 131026, title: TRICKY, details: null },
  });
  expect(items[3]).toMatchObject({
    type: 'location', location: { latitude: -23.5505199, longitude: 1e-7 }, interactiveReplyId: 'opt-"1"', forwarded: true,
    referral: { source_url: 'https://fb.me/x', headline: 'Oferta "já"', n: 1.5 }, media: null, error: null, reaction: null,
  });
  expect(items[4]).toMatchObject({ type: 'reaction', reaction: { toWamid: 'wamid.json-in', emoji: '😀' } });
});
