// The forwarding outbox in Postgres: one ordered queue per conversation and area. A claim
// picks the due heads of the queues of the areas it may deliver to (a skip scan of the pending
// index, area by area: one probe per queue, however long the queues, and only as far as it takes
// to find what the area may take; an area left alone, its circuit open or disabled, costs
// nothing however large its backlog), locks and leases them
// (FOR UPDATE SKIP LOCKED, so workers never take the same one) and takes each with a run of the
// events that follow it, which the worker delivers one after the other: one statement, a second
// one only for heads whose conversation may still be storing an earlier event. The rest of a queue stays invisible while its head is
// pending, so order holds across workers. An area that is disabled or failing holds only its own
// queues, never the conversation's events for the area it was reassigned to.
import type { Pool, PoolClient } from '../../store/pool.js';
import { statement, withTransaction } from '../../store/pool.js';
import { findMessagesForForwarding } from './payload.js';

export interface ClaimedEvent {
  readonly id: number;
  readonly webhookId: string;
  readonly areaId: number;
  readonly conversationId: number | null;
  readonly type: string;
  readonly messageId: number | null;
  readonly data: Record<string, unknown> | null;
  readonly body: string | null;
  readonly attempts: number;
  readonly createdAt: Date;
  /**
   * The head's lease as its claim set it (locked_until in epoch microseconds), null for the rest of
   * a run: what the run's checks prove it still owns (see continueRun).
   */
  readonly lease: string | null;
}

export interface ClaimOptions {
  /** Queues to take at most (one run each). */
  readonly queues: number;
  /** Events leased per queue at most: its head and those that follow it. */
  readonly runLength: number;
  readonly leaseMs: number;
  /** A stored event is claimable this long after it was stored (see forward_events.sort_at). */
  readonly settleMs: number;
  /**
   * How long at most an event waits for the transactions open when it was queued (one of them
   * may still commit an earlier event of its conversation; see forward_events.wait_xid).
   */
  readonly maxOrderWaitMs: number;
  /** Areas to leave alone (circuit open, no slot left). */
  readonly skipAreas: readonly number[];
  /** Queues an area may still take, for areas not at the default. */
  readonly areaCaps: ReadonlyMap<number, number>;
  /** Queues any other area may take. */
  readonly defaultCap: number;
  /** Areas whose runs are shorter than \`runLength\` (1: the head only, for a failing area or a half-open probe). */
  readonly runLengths: ReadonlyMap<number, number>;
}

type ClaimRow = { id: number; webhook_id: string; area_id: number; conversation_id: number | null; type: string; message_id: number | null; data: Record<string, unknown> | null; body: string | null; attempts: number; created_at: Date; lease: string | null };

// A lease's value as the worker holds it: locked_until in epoch microseconds (exact, unlike a JS
// Date). A head's lease only grows: a claim takes it once it ended (locked_until < now()) and sets
// now() + lease, a renewal sets a later now() + lease; so the value a run was given is still there
// only while no other worker claimed its head since.
const LEASE = (t: string) => `(extract(epoch FROM ${t}.locked_until) * 1000000)::bigint::text`;

// The conversation order lock's key (migration 020); its key space: the conversation id hashed.
const ORDER_LOCK = '2003201906';
// Taken: transactions running when it was queued ended, or waited for the bound.
const settledOrder = (e: string, maxWaitMs: string) =>
  `(${e}.wait_xid <= pg_snapshot_xmin(pg_current_snapshot()) OR ${e}.created_at <= now() - make_interval(secs => ${maxWaitMs}::float8 / 1000))`;

// A head a claim may take now: due, not leased, settled (stored at least settleMs ago).
const due = (h: string, settleMs: string) =>
  `(${h}.next_attempt_at <= now() AND (${h}.locked_until IS NULL OR ${h}.locked_until < now()) AND ${h}.created_at <= now() - make_interval(secs => ${settleMs}::float8 / 1000))`;
const HEAD_COLUMNS = 'f.id, f.conversation_id, f.area_id, f.next_attempt_at, f.locked_until, f.created_at, f.wait_xid, f.status';

// 'pending' for a recheck of events found by id: not a constant, so the planner cannot serve the
// lookup from the pending index (walked whole, every area's pending events, for a few ids).
const STILL_PENDING = "(SELECT 'pending'::text)";

// What a claim returns of each event.
const RUN_COLUMNS = (t: string) => ['id', 'webhook_id', 'area_id', 'conversation_id', 'type', 'message_id', 'data', 'body', 'attempts', 'created_at'].map((c) => `${t}.${c}`).join(', ');

// What follows each leased head (\`locked\`: id, conversation_id, area_id, sort_at, sort_seq, free),
// up to the first event not yet settled, due or free (a head sorted later that another worker
// leased). Not leased themselves: while their head is pending and leased, nobody else reaches
// them, and a run's outcomes are recorded together when it ends. Their columns come with the scan
// that finds them (its heap visits), not from a second lookup of each by id, which read three
// times the buffers of the scan. Parameters named by the caller.
const leaseAndRun = (p: { lease: string; settle: string; runLength: string; maxWait: string; lenAreas: string; lens: string }) => `
leased AS (
  UPDATE forward_events e SET locked_until = now() + make_interval(secs => ${p.lease}::float8 / 1000)
  FROM locked l WHERE e.id = l.id
  RETURNING ${RUN_COLUMNS('e')}, 0::bigint AS pos, ${LEASE('e')} AS lease
),
runs AS (
  SELECT r.* FROM locked h LEFT JOIN unnest(${p.lenAreas}::bigint[], ${p.lens}::int[]) AS l(area_id, len) ON l.area_id = h.area_id
  CROSS JOIN LATERAL (
    SELECT ${RUN_COLUMNS('x')}, row_number() OVER w AS pos, bool_and(x.ok) OVER w AS ok FROM (
      SELECT ${RUN_COLUMNS('p')}, p.sort_at, p.sort_seq,
             p.created_at <= now() - make_interval(secs => ${p.settle}::float8 / 1000) AND p.next_attempt_at <= now() AND (p.locked_until IS NULL OR p.locked_until < now())
               AND (h.free OR ${settledOrder('p', p.maxWait)}) AS ok
      FROM forward_events p
      WHERE p.conversation_id = h.conversation_id AND p.area_id = h.area_id AND p.status = 'pending'
        AND (p.sort_at, p.sort_seq, p.id) > (h.sort_at, h.sort_seq, h.id)
      ORDER BY p.sort_at, p.sort_seq, p.id LIMIT COALESCE(l.len, ${p.runLength}::int) - 1) x
    WINDOW w AS (ORDER BY x.sort_at, x.sort_seq, x.id)) r
  WHERE r.ok
)`;


// The claim, one statement in the usual case: picks the due heads of the queues it may take.
// Each area's walk of its queues (q) starts after the last queue this process took of it ($12,
// $13: round robin, so every queue gets its turn) and ends once it found as many due heads as
// the area may take, wrapping around once at most: a claim for a slot or two probes a few queues,
// not every queue with pending events (it did: 200 probes per claim with 200 conversations
// waiting, whatever it took, most claims taking one or two runs). Among the heads found, the
// longest due go first;
// a head whose order is settled by the transactions it waited for (or that has no conversation)
// is locked (FOR UPDATE SKIP LOCKED, so workers never take the same one; the recheck of a row
// another worker changed since the snapshot sees its lease or its outcome) and leased at once,
// with its run. A head not settled is taken only if no transaction is queueing into its
// conversation now (the order lock is free), tried only for the queues picked (materialized
// before the tries); such heads come back as \`tried\` rows for a second statement, whose
// snapshot, taken after the try, sees every event of the conversation queued so far. The try's
// lock ends with this statement. Exported for bench/forward-backlog.ts, which explains it.
export const CLAIM_SQL = `
WITH RECURSIVE
allowed AS (
  SELECT a.id, LEAST(COALESCE(c.cap, $6::int), $1::int) AS stop, COALESCE(s.after, 0) AS after
  FROM areas a
  LEFT JOIN unnest($4::bigint[], $5::int[]) AS c(area_id, cap) ON c.area_id = a.id
  LEFT JOIN unnest($12::bigint[], $13::bigint[]) AS s(area_id, after) ON s.area_id = a.id
  WHERE a.disabled_at IS NULL AND NOT (a.id = ANY ($3::bigint[]))
),
q AS (
  SELECT n.*, a.stop, a.after, ${due('n', '$2')}::int AS found FROM allowed a CROSS JOIN LATERAL (
    (SELECT ${HEAD_COLUMNS}, false AS lapped FROM forward_events f
     WHERE f.status = 'pending' AND f.area_id = a.id AND f.conversation_id > a.after
     ORDER BY f.conversation_id, f.sort_at, f.sort_seq, f.id LIMIT 1)
    UNION ALL
    (SELECT ${HEAD_COLUMNS}, true FROM forward_events f
     WHERE f.status = 'pending' AND f.area_id = a.id AND f.conversation_id IS NOT NULL
     ORDER BY f.conversation_id, f.sort_at, f.sort_seq, f.id LIMIT 1)
    LIMIT 1) n
  WHERE a.stop > 0
  UNION ALL
  SELECT n.*, q.stop, q.after, q.found + ${due('n', '$2')}::int FROM q CROSS JOIN LATERAL (
    (SELECT ${HEAD_COLUMNS}, q.lapped FROM forward_events f
     WHERE f.status = 'pending' AND f.area_id = q.area_id AND f.conversation_id > q.conversation_id
     ORDER BY f.conversation_id, f.sort_at, f.sort_seq, f.id LIMIT 1)
    UNION ALL
    (SELECT ${HEAD_COLUMNS}, true FROM forward_events f
     WHERE NOT q.lapped AND f.status = 'pending' AND f.area_id = q.area_id AND f.conversation_id IS NOT NULL
     ORDER BY f.conversation_id, f.sort_at, f.sort_seq, f.id LIMIT 1)
    LIMIT 1) n
  WHERE q.found < q.stop AND NOT (n.lapped AND n.conversation_id > q.after)
),
heads AS (
  SELECT q.id, q.conversation_id, q.area_id, q.next_attempt_at, q.locked_until, q.created_at, q.wait_xid, q.status FROM q
  UNION ALL
  -- Per allowed area (OFFSET 0 keeps the subquery from being flattened into a join, whose
  -- plan read every area's pending entries for the area-less ones).
  SELECT n.* FROM allowed a CROSS JOIN LATERAL (
    SELECT ${HEAD_COLUMNS} FROM forward_events f
    WHERE f.status = 'pending' AND f.area_id = a.id AND f.conversation_id IS NULL OFFSET 0) n
),
eligible AS (
  SELECT h.*, row_number() OVER (PARTITION BY h.area_id ORDER BY h.next_attempt_at, h.id) AS rn
  FROM heads h WHERE ${due('h', '$2')}
),
picked AS MATERIALIZED (
  SELECT e.* FROM eligible e LEFT JOIN unnest($4::bigint[], $5::int[]) AS c(area_id, cap) ON c.area_id = e.area_id
  WHERE e.rn <= COALESCE(c.cap, $6::int)
  ORDER BY e.next_attempt_at, e.id LIMIT $1
),
tried AS MATERIALIZED (
  SELECT p.id, p.area_id, p.conversation_id, p.status,
         CASE WHEN p.conversation_id IS NULL OR ${settledOrder('p', '$7')} THEN NULL
              ELSE pg_try_advisory_xact_lock(${ORDER_LOCK}, hashint8(p.conversation_id)) END AS free
  FROM picked p
),
-- By primary key: the recheck compares with the status the head was picked in (pending), not with
-- a constant, so the planner cannot serve it from the pending index, whose statistics (taken
-- while little is pending) made a walk of every area's pending events, a down area's whole
-- backlog, look cheaper than a lookup per head. The same in the second statement.
locked AS (
  SELECT f.id, f.conversation_id, f.area_id, f.sort_at, f.sort_seq, false AS free FROM forward_events f JOIN tried t ON t.id = f.id
  WHERE t.free IS NULL AND f.status = t.status AND f.next_attempt_at <= now() AND (f.locked_until IS NULL OR f.locked_until < now())
  FOR UPDATE OF f SKIP LOCKED
),
${leaseAndRun({ lease: '$8', settle: '$2', runLength: '$9', maxWait: '$7', lenAreas: '$10', lens: '$11' })}
SELECT *, false AS tried FROM leased
UNION ALL
SELECT ${RUN_COLUMNS('r')}, r.pos, NULL, false FROM runs r
UNION ALL
SELECT t.id, NULL, t.area_id, t.conversation_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, true FROM tried t WHERE t.free`;

// The second statement, for the queues whose order lock was free: each one's head found again
// on a snapshot taken after the try (an earlier event whose store committed meanwhile is its
// head now), locked, leased and taken with its run.
const TAKE_SQL = `
WITH
heads AS (
  SELECT n.* FROM unnest($1::bigint[], $2::bigint[]) AS w(area_id, conversation_id) CROSS JOIN LATERAL (
    SELECT f.id, f.next_attempt_at, f.locked_until, f.created_at, f.status FROM forward_events f
    WHERE f.status = 'pending' AND f.area_id = w.area_id AND f.conversation_id = w.conversation_id
    ORDER BY f.sort_at, f.sort_seq, f.id LIMIT 1) n
),
due AS (
  SELECT h.id, h.status FROM heads h
  WHERE h.next_attempt_at <= now() AND (h.locked_until IS NULL OR h.locked_until < now())
    AND h.created_at <= now() - make_interval(secs => $4::float8 / 1000)
),
locked AS (
  SELECT f.id, f.conversation_id, f.area_id, f.sort_at, f.sort_seq, true AS free FROM forward_events f JOIN due d ON d.id = f.id
  WHERE f.status = d.status AND f.next_attempt_at <= now() AND (f.locked_until IS NULL OR f.locked_until < now())
  FOR UPDATE OF f SKIP LOCKED
),
${leaseAndRun({ lease: '$3', settle: '$4', runLength: '$5', maxWait: '$6', lenAreas: '$7', lens: '$8' })}
SELECT * FROM leased
UNION ALL
SELECT ${RUN_COLUMNS('r')}, r.pos, NULL FROM runs r`;

/** Per pool and area, the conversation whose queue its last claim took last (the walk goes on after it). */
const cursors = new WeakMap<Pool, Map<number, number>>();

/** The walk went on from the cursor, up to the highest id, then from the lowest: it ended at the last one taken in that order. */
function advance(after: Map<number, number>, heads: readonly { area_id: number; conversation_id: number | null }[]): void {
  const taken = new Map<number, number[]>();
  for (const h of heads) taken.set(h.area_id, [...(taken.get(h.area_id) ?? []), h.conversation_id!]);
  for (const [area, ids] of taken) {
    const from = after.get(area) ?? 0;
    const wrapped = ids.filter((c) => c <= from);
    after.set(area, Math.max(...(wrapped.length > 0 ? wrapped : ids)));
  }
}

/**
 * Claims runs: each a queue's due head and up to \`runLength - 1\` events after it, in delivery order.
 * A later event of a run is delivered only once the one before it succeeded.
 */
export async function claimRuns(pool: Pool, o: ClaimOptions): Promise<ClaimedEvent[][]> {
  const caps = [...o.areaCaps];
  const after = cursors.get(pool) ?? new Map<number, number>();
  cursors.set(pool, after);
  const lengths = [...o.runLengths];
  const lenAreas = lengths.map(([id]) => id);
  const lens = lengths.map(([, n]) => n);
  // Prepared when the pool may (DATABASE_PREPARED_STATEMENTS), as the outcomes' statement: planning
  // these CTEs anew for every claim cost Postgres as much as running them.
  const { rows: first } = await pool.query<ClaimRow & { pos: string; tried: boolean }>(statement(pool, CLAIM_SQL, [
    o.queues, o.settleMs, o.skipAreas, caps.map(([id]) => id), caps.map(([, n]) => n), o.defaultCap, o.maxOrderWaitMs,
    o.leaseMs, o.runLength, lenAreas, lens, [...after.keys()], [...after.values()],
  ]));
  advance(after, first.filter((r) => r.conversation_id !== null && (r.tried || Number(r.pos) === 0)));
  const rows: (ClaimRow & { pos: string })[] = first.filter((r) => !r.tried);
  const tried = first.filter((r) => r.tried);
  if (tried.length > 0) {
    const { rows: more } = await pool.query<ClaimRow & { pos: string }>(statement(pool, TAKE_SQL, [
      tried.map((t) => t.area_id), tried.map((t) => t.conversation_id), o.leaseMs, o.settleMs, o.runLength, o.maxOrderWaitMs, lenAreas, lens,
    ]));
    rows.push(...more);
  }
  const runs = new Map<string, { pos: number; e: ClaimedEvent }[]>();
  for (const r of rows) {
    const queue = r.conversation_id === null ? `e${r.id}` : `${r.conversation_id}:${r.area_id}`;
    const list = runs.get(queue) ?? [];
    list.push({ pos: Number(r.pos), e: { id: r.id, webhookId: r.webhook_id, areaId: r.area_id, conversationId: r.conversation_id, type: r.type, messageId: r.message_id, data: r.data, body: r.body, attempts: r.attempts, createdAt: r.created_at, lease: r.lease } });
    runs.set(queue, list);
  }
  return [...runs.values()].map((list) => list.sort((a, b) => a.pos - b.pos).map((x) => x.e));
}

// continueRun's statement. The head must still be pending and hold the lease this run was given
// (its claim's or its last check's: any other worker's claim since set a later one), which it
// renews at every check under the row's lock (a claim skips a locked head, and one that committed
// first leaves this update nothing to change), so the lease outlasts the next answer and window
// (it exceeds the delivery timeout); and nothing may have been stored meanwhile into the queue
// that sorts before the run's last event but is not one of the run's own: such an event ends the
// run at the window, as before, and the next claim takes it in order (ORDER_FREE_SQL ran first:
// no store was open in the conversation, so this statement's snapshot sees all it queued). One probe of the pending
// index, a few entries long: the run's area and conversation are parameters ($6, $7), not taken
// from h through the join, whose plan (custom and generic) walked every area's pending entries
// and filtered them by the join (20,208 buffers with a down area's 20,000 events, 12 without).
export const CONTINUE_SQL = `WITH h AS (
    UPDATE forward_events SET locked_until = now() + make_interval(secs => $4::float8 / 1000)
    WHERE id = $1 AND status = ${STILL_PENDING} AND ${LEASE('forward_events')} = $5::text
    RETURNING id, area_id, conversation_id, ${LEASE('forward_events')} AS lease)
  SELECT (SELECT lease FROM h) AS lease, NOT EXISTS (
    SELECT 1 FROM h JOIN forward_events last ON last.id = $2 JOIN forward_events p
      ON p.area_id = $6::bigint AND p.conversation_id = $7::bigint AND p.status = 'pending'
     AND (p.sort_at, p.sort_seq, p.id) < (last.sort_at, last.sort_seq, last.id)
    WHERE NOT (p.id = ANY ($3::bigint[]))) AS clear`;

// Run by continueRun first, in a statement of its own (as the claim's try and its second
// statement): a store still open in the run's conversation (its order lock held, shared) may yet
// commit an event that sorts before the run's rest, which the check's snapshot cannot see, so the
// run ends; a free lock means every event queued into the conversation so far has committed, and
// CONTINUE_SQL's snapshot, taken after this statement ended, sees them. (In one statement the try
// would come after its snapshot: a store committing in between would go unseen.) The lock ends
// with this statement.
const ORDER_FREE_SQL = `SELECT pg_try_advisory_xact_lock(${ORDER_LOCK}, hashint8($1::bigint)) AS free`;

/**
 * Whether a run whose window ended may go on with the rest it already holds, instead of ending
 * and having its rest read, built and claimed again: its head is still pending under the lease
 * \`lease\` (the claim's or the last check's; a run whose lease ran out during an answer and whose
 * queue another worker took ends here), and no event stored since the claim sorts before the
 * rest, nor may come from a store still open in its conversation (the order lock is tried, as a
 * claim tries it for events whose order is not settled). \`run\` is the whole run. The lease
 * renewed (go on, and give it to the next check), or null (end).
 */
export async function continueRun(pool: Pool, run: readonly ClaimedEvent[], leaseMs: number, lease: string): Promise<string | null> {
  const { rows: order } = await pool.query<{ free: boolean }>(statement(pool, ORDER_FREE_SQL, [run[0]!.conversationId]));
  if (order[0]?.free !== true) return null;
  const { rows } = await pool.query<{ lease: string | null; clear: boolean }>(statement(pool, CONTINUE_SQL, [run[0]!.id, run[run.length - 1]!.id, run.map((e) => e.id), leaseMs, lease, run[0]!.areaId, run[0]!.conversationId]));
  return rows[0]?.lease != null && rows[0].clear ? rows[0].lease : null;
}

/** Gives claimed heads back untouched (more than an area may take now): their leases end. */
export async function release(pool: Pool, ids: readonly number[]): Promise<void> {
  if (ids.length > 0) await pool.query(`UPDATE forward_events SET locked_until = NULL WHERE id = ANY ($1::bigint[]) AND status = ${STILL_PENDING}`, [ids]);
}

/** The body each event is signed with: built once, at the first attempt, then kept. */
export async function bodiesFor(pool: Pool, events: readonly ClaimedEvent[]): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  const need = events.filter((e) => e.body === null);
  const messages = await findMessagesForForwarding(pool, need.flatMap((e) => (e.messageId !== null ? [e.messageId] : [])));
  for (const e of events) {
    if (e.body !== null) {
      out.set(e.id, e.body);
      continue;
    }
    const message = e.messageId !== null ? messages.get(e.messageId) : undefined;
    const data: Record<string, unknown> = { ...(e.data ?? {}) };
    if (message) {
      data.conversationId = message.conversationId;
      data.channelId = message.channelId;
      data.contact = message.contact;
      data.message = message;
    }
    data.areaId = e.areaId;
    out.set(e.id, JSON.stringify({ type: e.type, timestamp: e.createdAt.toISOString(), data: orderData(data) }));
  }
  return out;
}

// The documented fields first, in the documented order: receivers reading the raw body see it as in the README.
function orderData(d: Record<string, unknown>): Record<string, unknown> {
  const { conversationId, channelId, areaId, contact, message, ...rest } = d;
  return { conversationId: conversationId ?? null, channelId: channelId ?? null, areaId, contact: contact ?? null, ...(message !== undefined ? { message } : {}), ...rest };
}

export interface Outcome {
  readonly id: number;
  readonly areaId: number;
  /** The signed body, kept for the retries and a replay; null once delivered (nothing will sign it again). */
  readonly body: string | null;
  /** 'pending' (retry at nextAttemptAt), 'succeeded' or 'dead'. */
  readonly status: 'pending' | 'succeeded' | 'dead';
  readonly nextAttemptAt: Date;
  readonly statusCode: number | null;
  readonly latencyMs: number;
  readonly error: string | null;
  readonly response: string | null;
}

// The dead-letter reason of an event left pending when its area was disabled.
const DISABLED_REASON = "'area disabled: ' || COALESCE(a.disabled_reason, 'no reason given')";

// recordOutcomes's statement, one text whatever the batch (prepared when the pool may).
const RECORD_SQL = `WITH r AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::int[], $7::int[], $8::text[], $9::text[])
      WITH ORDINALITY AS r(id, area_id, body, status, next_at, code, latency, error, response, n)),
  -- Locked, so a disable committed while this runs is seen (it locks the area first as well).
  a AS (SELECT id, disabled_at, disabled_reason FROM areas WHERE id IN (SELECT area_id FROM r) FOR SHARE),
  -- Only for events still there: an area deleted during its delivery took its events with it,
  -- and their attempts must not fail the other areas' outcomes of the batch. Events go only with
  -- their area (migration 022's trigger, in the deleting transaction), so an area found in a is
  -- one whose events are all there, and its lock keeps a deletion from committing in between:
  -- no lookup of each event by id.
  att AS (
    INSERT INTO forward_attempts (event_id, area_id, status_code, latency_ms, error, response)
    SELECT r.id, r.area_id, r.code, r.latency, r.error, r.response FROM r
    JOIN a ON a.id = r.area_id ORDER BY r.n),
  -- Never a row the final UPDATE changes too (one statement changes a row once).
  rel AS (
    UPDATE forward_events SET locked_until = NULL
    WHERE id = ANY ($10::bigint[]) AND NOT (id = ANY ($1::bigint[])) AND status = ${STILL_PENDING}),
  last AS (
    SELECT DISTINCT ON (id) id, area_id, body, status, next_at, code, error, count(*) OVER (PARTITION BY id) AS tries
    FROM r ORDER BY id, n DESC)
  UPDATE forward_events e SET
    status = CASE WHEN last.status = 'pending' AND a.disabled_at IS NOT NULL THEN 'dead' ELSE last.status END,
    attempts = e.attempts + last.tries, next_attempt_at = last.next_at, locked_until = NULL,
    last_status = last.code,
    last_error = CASE WHEN last.status = 'pending' AND a.disabled_at IS NOT NULL THEN ${DISABLED_REASON} ELSE last.error END,
    body = COALESCE(e.body, last.body),
    finished_at = CASE WHEN last.status = 'pending' AND a.disabled_at IS NULL THEN NULL ELSE now() END
  FROM last JOIN a ON a.id = last.area_id WHERE e.id = last.id
    AND (e.status = 'pending' OR (e.status = 'dead' AND last.status = 'dead'))`;

/**
 * Records a batch of attempts and their events' new state, and gives back the leases of heads
 * never attempted, in one statement. An event to retry whose area was disabled meanwhile is
 * dead-lettered with the reason instead: nobody would ever deliver it. An event can be in a batch
 * twice (its lease ran out while its first outcome waited, and it was delivered again): an UPDATE
 * changes a row once however many source rows join it, so the batch is folded to each event's
 * last outcome, counting all of its attempts. A finished event is never reopened: the late outcome
 * of a worker whose lease ran out only adds its attempt. A dead one still takes a dead outcome (a
 * 410 dead-letters its own event through the disable before its outcome says why).
 */
export async function recordOutcomes(pool: Pool, outcomes: readonly Outcome[], released: readonly number[] = []): Promise<void> {
  if (outcomes.length === 0 && released.length === 0) return;
  const col = <T>(f: (o: Outcome) => T) => outcomes.map(f);
  await pool.query(statement(pool, RECORD_SQL, [
    col((o) => o.id), col((o) => o.areaId), col((o) => o.body), col((o) => o.status), col((o) => o.nextAttemptAt.toISOString()), col((o) => o.statusCode), col((o) => o.latencyMs), col((o) => o.error), col((o) => o.response), released,
  ]));
}

/**
 * Disables the area (unless it already is) and dead-letters its pending events with the reason:
 * they stay visible in its deliveries and can be replayed once it is enabled. The area is locked
 * FOR UPDATE first, which waits for every transaction queueing an event for it (they hold it FOR
 * KEY SHARE); the dead-lettering runs after, in a statement of its own, so it sees what they queued.
 * Runs in the caller's transaction when given one.
 */
export async function disableArea(pool: Pool, areaId: number, reason: string, db?: PoolClient): Promise<{ deadLettered: number } | null> {
  const run = async (c: PoolClient) => {
    if ((await c.query('SELECT 1 FROM areas WHERE id = $1 FOR UPDATE', [areaId])).rowCount === 0) return null;
    const { rows } = await c.query<{ dead: number }>(
      `WITH a AS (
         UPDATE areas SET disabled_at = COALESCE(disabled_at, now()), disabled_reason = COALESCE(disabled_reason, $2), updated_at = now()
         WHERE id = $1 RETURNING id, disabled_reason),
       dead AS (
         UPDATE forward_events e SET status = 'dead', locked_until = NULL, finished_at = now(), last_error = ${DISABLED_REASON}
         FROM a WHERE e.area_id = a.id AND e.status = 'pending' RETURNING e.id)
       SELECT (SELECT count(*)::int FROM dead) AS dead FROM a`,
      [areaId, reason],
    );
    return rows[0] ? { deadLettered: rows[0].dead } : null;
  };
  return db ? run(db) : withTransaction(pool, run);
}

/**
 * Backlog per area: pending events, the age of the oldest, and those held back by a transaction
 * still queueing into their conversation that was already running when they were queued (a long
 * one holds them back), for the gauges. Every area has a row (0 when nothing waits), so a
 * dashboard shows a caught-up area as 0, not as missing.
 */
export async function backlog(pool: Pool): Promise<{ areaId: number; pending: number; oldestSeconds: number; waitingOnTransactions: number }[]> {
  const { rows } = await pool.query<{ area_id: number; pending: number; oldest: number; held: number }>(
    `WITH locks AS (
       SELECT objid::bigint AS k FROM pg_locks
       WHERE locktype = 'advisory' AND classid = ${ORDER_LOCK} AND objsubid = 2 AND granted
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
     SELECT a.id AS area_id, count(e.area_id)::int AS pending, coalesce(extract(epoch FROM now() - min(e.created_at)), 0)::float8 AS oldest,
            count(e.area_id) FILTER (WHERE e.wait_xid > (SELECT pg_snapshot_xmin(pg_current_snapshot()))
              AND (hashint8(e.conversation_id)::bigint & 4294967295) IN (SELECT k FROM locks))::int AS held
     FROM areas a LEFT JOIN forward_events e ON e.area_id = a.id AND e.status = 'pending' GROUP BY a.id`,
  );
  return rows.map((r) => ({ areaId: r.area_id, pending: r.pending, oldestSeconds: r.oldest, waitingOnTransactions: r.held }));
}
