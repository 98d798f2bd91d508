// A run past its window checks (continueRun) that it still holds its queue and that nothing stored
// since sorts before its rest: one small statement every window per run in delivery. A down
// area's backlog (pending events piling up while its circuit is open) must cost that check
// nothing, as it costs the claim nothing (router-claim-skipped-backlog): the check's probe of the
// pending index got the run's area and conversation only through its join with the head, and its
// plan walked every area's pending entries and filtered them (20,208 buffers with 20,000 pending
// events of another area, 12 without). Measured in Postgres's own terms, shared buffers, with the
// table's statistics taken while little was pending, for the plan a pool gets with and without
// prepared statements, the backlog in other conversations and in the run's conversation id.
import pg from 'pg';
import { expect, it } from 'vitest';
import { continueRun, type ClaimedEvent } from '../../src/router/forwarding/outbox.js';
import type { Pool } from '../../src/store/pool.js';
import { createTestDb, type TestDb } from '../helpers/context.js';

type PlanNode = { 'Node Type': string; 'Relation Name'?: string; 'Actual Loops'?: number; 'Shared Hit Blocks': number; 'Shared Read Blocks': number; Plans?: PlanNode[] };

/** The most buffers one loop of a scan of forward_events read, anywhere in the plan. */
const widestScan = (n: PlanNode): number =>
  Math.max(
    n['Relation Name'] === 'forward_events' && n['Node Type'].includes('Scan') ? (n['Shared Hit Blocks'] + n['Shared Read Blocks']) / Math.max(1, n['Actual Loops'] ?? 1) : 0,
    ...(n.Plans ?? []).map(widestScan),
  );

/** The check of a run of the healthy area (in a transaction rolled back: it renews the lease): its buffers, widest scan and answer. */
async function check(db: TestDb, run: ClaimedEvent[], generic: boolean): Promise<{ buffers: number; widestScan: number; go: boolean }> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const plans: { Plan: PlanNode }[] = [];
  client.on('notice', (n) => {
    const text = n.message ?? '';
    if (text.includes('"Plan"') && text.includes('last.sort_at')) plans.push(JSON.parse(text.slice(text.indexOf('{'))) as (typeof plans)[number]);
  });
  try {
    await client.query("LOAD 'auto_explain'");
    await client.query(`SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; SET auto_explain.log_timing = off;
      SET auto_explain.log_format = json; SET auto_explain.log_level = notice; SET client_min_messages = notice`);
    if (generic) await client.query('SET plan_cache_mode = force_generic_plan');
    await client.query('BEGIN');
    const go = (await continueRun(client as unknown as Pool, run, 30_000, run[0]!.lease!)) !== null;
    expect(plans).toHaveLength(1);
    const plan = plans[0]!.Plan;
    return { buffers: plan['Shared Hit Blocks'] + plan['Shared Read Blocks'], widestScan: widestScan(plan), go };
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    await client.end();
  }
}

it("a down area's backlog costs a run's check nothing, whatever its conversations", async () => {
  const db = await createTestDb();
  try {
    const area = async (name: string) => Number((await db.pool.query<{ id: string }>("INSERT INTO areas (name, webhook_url) VALUES ($1, 'http://127.0.0.1:9/hook') RETURNING id", [name])).rows[0]!.id);
    const healthy = await area('Healthy');
    const down = await area('Down');
    // Statistics of a table of delivered events, as autovacuum leaves them; kept while the test runs.
    await db.pool.query('ALTER TABLE forward_events SET (autovacuum_enabled = false)');
    await db.pool.query(
      `INSERT INTO forward_events (area_id, conversation_id, type, data, status, finished_at, created_at)
       SELECT CASE WHEN i % 2 = 0 THEN $1::bigint ELSE $2::bigint END, i % 200, 'conversation.assigned', '{}', 'succeeded', now(), now() - interval '1 hour'
       FROM generate_series(1, 20000) i`,
      [healthy, down],
    );
    await db.pool.query('ANALYZE forward_events');
    // The run: 50 events of the healthy area's conversation 2, its head leased.
    const { rows } = await db.pool.query<{ id: string }>(
      `INSERT INTO forward_events (area_id, conversation_id, type, data, created_at)
       SELECT $1, 2, 'conversation.assigned', '{}', now() - interval '1 minute' FROM generate_series(1, 50) i RETURNING id`,
      [healthy],
    );
    const ids = rows.map((r) => Number(r.id)).sort((a, b) => a - b);
    const { rows: leased } = await db.pool.query<{ lease: string }>(
      `UPDATE forward_events SET locked_until = now() + interval '30 s' WHERE id = $1 RETURNING (extract(epoch FROM locked_until) * 1000000)::bigint::text AS lease`,
      [ids[0]],
    );
    const run: ClaimedEvent[] = ids.map((id, i) => ({
      id, webhookId: String(id), areaId: healthy, conversationId: 2, type: 'conversation.assigned', messageId: null, data: {}, body: null, attempts: 0, createdAt: new Date(), lease: i === 0 ? leased[0]!.lease : null,
    }));
    const backlogs = { 'no backlog': null, 'backlog in other conversations': '1 + 2 * (i % 100)', 'backlog in the run\'s conversation id': '2' } as const;
    const out: Record<string, { buffers: number; widestScan: number; go: boolean }> = {};
    for (const [name, conversation] of Object.entries(backlogs)) {
      await db.pool.query(`DELETE FROM forward_events WHERE status = 'pending' AND area_id = $1`, [down]);
      if (conversation !== null) {
        await db.pool.query(
          `INSERT INTO forward_events (area_id, conversation_id, type, data, created_at)
           SELECT $1, ${conversation}, 'conversation.assigned', '{}', now() - interval '1 minute' FROM generate_series(1, 20000) i`,
          [down],
        );
      }
      out[name] = await check(db, run, false);
      out[`${name}, generic plan`] = await check(db, run, true);
    }
    for (const [name, m] of Object.entries(out)) {
      // The run holds its lease and nothing sorts before its rest: it goes on.
      expect(m.go, name).toBe(true);
      const base = out[name.endsWith('generic plan') ? 'no backlog, generic plan' : 'no backlog']!;
      // A lookup per scan (the head, the last event, the queue's few entries), never a walk of
      // the backlog's index entries (~135 pages; the whole statement read 20,208 buffers).
      expect(m.buffers, `${name}: ${base.buffers} buffers without the backlog, ${m.buffers} with it`).toBeLessThan(base.buffers * 2);
      expect(m.widestScan, name).toBeLessThan(10);
    }
  } finally {
    await db.drop();
  }
}, 120_000);
