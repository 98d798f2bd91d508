// The message inside a forwarded event has the shape of GET /v1/messages/:id.
import { MEDIA_COLUMNS, MEDIA_JOIN, toView, type MessageView, type Row } from '../../store/messages-read.js';
import { ISO_TIMES } from '../../store/pg-time.js';
import { statement, type Pool } from '../../store/pool.js';

/** Messages with their status history, by id, in two queries whatever their number. */
export async function findMessagesForForwarding(pool: Pool, ids: readonly number[]): Promise<Map<number, MessageView>> {
  const out = new Map<number, MessageView>();
  if (ids.length === 0) return out;
  // Times read straight into the body's form (as GET /v1/messages writes them), not parsed
  // into a Date per column only to be formatted back.
  const { rows } = await pool.query<Row>({
    ...statement(pool, `SELECT m.*, c.wa_id, c.profile_name, c.user_id, c.username, ${MEDIA_COLUMNS} FROM messages m JOIN contacts c ON c.id = m.contact_id ${MEDIA_JOIN} WHERE m.id = ANY ($1::bigint[])`, [[...new Set(ids)]]),
    types: ISO_TIMES,
  });
  // Statuses exist only for our outbound messages: a forwarded customer message needs no second query.
  const wamids = rows.flatMap((r) => (r.wamid && r.direction === 'outbound' ? [r.wamid] : []));
  const statuses = wamids.length
    ? (await pool.query<Row>({ text: 'SELECT * FROM message_statuses WHERE wamid = ANY ($1::text[]) ORDER BY wa_timestamp, status_rank, id', values: [wamids], types: ISO_TIMES })).rows
    : [];
  const byWamid = new Map<string, Row[]>();
  for (const s of statuses) {
    const list = byWamid.get(s.wamid!) ?? [];
    list.push(s);
    byWamid.set(s.wamid!, list);
  }
  for (const r of rows) out.set(r.id, toView(r, r.wamid ? (byWamid.get(r.wamid) ?? []) : []));
  return out;
}
