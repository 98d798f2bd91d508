// The claim counter tells a worker with every slot in delivery ('full'), or with an area held
// back at its per-area cap ('capped'), from one that found nothing due ('empty'): counted as
// 'empty', a worker saturated by a slow receiver looked idle.
import { expect, it } from 'vitest';
import { eventually } from '../helpers/app.js';
import { forwardingKit } from '../helpers/forwarding.js';

/** Requests held by the receiver until released. */
const held: (() => void)[] = [];
let answered = 0;
const kit = forwardingKit((_, res) => {
  held.push(() => {
    answered++;
    res.end('ok');
  });
});

type Counts = () => Promise<Map<string, number>>;

/**
 * Two conversations of a new area queued, a worker of `concurrency` slots started: while the
 * receiver holds the first event (the second waits for its slot), the claim counters' deltas
 * over 300 ms of 20 ms polls go to `during`; then both are answered and delivered, and `after`
 * gets the counters.
 */
async function withFirstEventHeld(area: string, concurrency: number, during: (delta: (result: string) => number) => void, after?: (counts: Counts) => Promise<void>): Promise<void> {
  const areaId = await kit.area(area);
  const answeredBefore = answered;
  await kit.db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data, created_at)
     SELECT $1, i, 'conversation.assigned', '{}', now() - interval '1 minute' FROM generate_series(1, 2) i`,
    [areaId],
  );
  const worker = kit.worker({ schedule: [1], concurrency, pollMs: 20, leaseMs: 30_000, settleMs: 0 });
  const counts: Counts = async () => new Map((await worker.metrics.claims.get()).values.map((v) => [String(v.labels.result), v.value]));
  worker.forwarder.start();
  try {
    await eventually(async () => (held.length === 1 ? true : null), { what: 'the first event in delivery', timeoutMs: 10_000 });
    const before = await counts();
    // The poll tries every 20 ms while the slot is held.
    await new Promise((r) => setTimeout(r, 300));
    const now = await counts();
    during((k) => (now.get(k) ?? 0) - (before.get(k) ?? 0));
    held.shift()!();
    await eventually(async () => (held.length === 1 ? true : null), { what: 'the second event in delivery once the slot freed', timeoutMs: 10_000 });
    held.shift()!();
    await eventually(async () => (answered === answeredBefore + 2 ? true : null), { what: 'both delivered', timeoutMs: 10_000 });
    await after?.(counts);
  } finally {
    while (held.length > 0) held.shift()!();
    await worker.stop();
  }
}

it("a worker with every slot in delivery counts its claim rounds as 'full', not 'empty'", async () => {
  // One slot: it takes the first conversation, the second waits for it.
  await withFirstEventHeld('Slow', 1, (delta) => {
    expect(delta('full')).toBeGreaterThan(0);
    expect(delta('empty')).toBe(0);
  });
});

// The common saturation: one slow area at its per-area cap (a tenth of the worker's slots by
// default) while the worker's other slots are free and the area's next queue is due.
it("a worker whose only busy area is at its per-area cap counts its claim rounds as 'capped', not 'empty'", async () => {
  await withFirstEventHeld('Capped', 10, (delta) => {
    expect(delta('capped')).toBeGreaterThan(0);
    expect(delta('empty')).toBe(0);
    expect(delta('full')).toBe(0);
  }, async (counts) => {
    // Nothing due and nothing held back: 'empty' again.
    const idle = await counts();
    await new Promise((r) => setTimeout(r, 300));
    expect((await counts()).get('empty') ?? 0).toBeGreaterThan(idle.get('empty') ?? 0);
  });
});
