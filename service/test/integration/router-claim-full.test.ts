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

it("a worker with every slot in delivery counts its claim rounds as 'full', not 'empty'", async () => {
  const areaId = await kit.area('Slow');
  // Two conversations: one slot takes the first, the second waits for it.
  await kit.db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data, created_at)
     SELECT $1, i, 'conversation.assigned', '{}', now() - interval '1 minute' FROM generate_series(1, 2) i`,
    [areaId],
  );
  const worker = kit.worker({ schedule: [1], concurrency: 1, pollMs: 20, leaseMs: 30_000, settleMs: 0 });
  const counts = async () => new Map((await worker.metrics.claims.get()).values.map((v) => [String(v.labels.result), v.value]));
  worker.forwarder.start();
  try {
    await eventually(async () => (held.length === 1 ? true : null), { what: 'the first event in delivery', timeoutMs: 10_000 });
    const before = await counts();
    // The poll tries every 20 ms while the only slot is held.
    await new Promise((r) => setTimeout(r, 300));
    const during = await counts();
    const delta = (k: string) => (during.get(k) ?? 0) - (before.get(k) ?? 0);
    expect(delta('full')).toBeGreaterThan(0);
    expect(delta('empty')).toBe(0);
    held.shift()!();
    await eventually(async () => (held.length === 1 ? true : null), { what: 'the second event in delivery once the slot freed', timeoutMs: 10_000 });
    held.shift()!();
    await eventually(async () => (answered === 2 ? true : null), { what: 'both delivered', timeoutMs: 10_000 });
  } finally {
    while (held.length > 0) held.shift()!();
    await worker.stop();
  }
});

// The common saturation: one slow area at its per-area cap (a tenth of the worker's slots by
// default) while the worker's other slots are free and the area's next queue is due.
it("a worker whose only busy area is at its per-area cap counts its claim rounds as 'capped', not 'empty'", async () => {
  const areaId = await kit.area('Capped');
  const answeredBefore = answered;
  await kit.db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data, created_at)
     SELECT $1, i, 'conversation.assigned', '{}', now() - interval '1 minute' FROM generate_series(1, 2) i`,
    [areaId],
  );
  const worker = kit.worker({ schedule: [1], concurrency: 10, pollMs: 20, leaseMs: 30_000, settleMs: 0 });
  const counts = async () => new Map((await worker.metrics.claims.get()).values.map((v) => [String(v.labels.result), v.value]));
  worker.forwarder.start();
  try {
    await eventually(async () => (held.length === 1 ? true : null), { what: 'the first event in delivery', timeoutMs: 10_000 });
    const before = await counts();
    // The poll tries every 20 ms while the area's only slot is held.
    await new Promise((r) => setTimeout(r, 300));
    const during = await counts();
    const delta = (k: string) => (during.get(k) ?? 0) - (before.get(k) ?? 0);
    expect(delta('capped')).toBeGreaterThan(0);
    expect(delta('empty')).toBe(0);
    expect(delta('full')).toBe(0);
    held.shift()!();
    await eventually(async () => (held.length === 1 ? true : null), { what: 'the second event in delivery once the slot freed', timeoutMs: 10_000 });
    held.shift()!();
    await eventually(async () => (answered === answeredBefore + 2 ? true : null), { what: 'both delivered', timeoutMs: 10_000 });
    // Nothing due and nothing held back: 'empty' again.
    const idle = await counts();
    await new Promise((r) => setTimeout(r, 300));
    expect((await counts()).get('empty') ?? 0).toBeGreaterThan(idle.get('empty') ?? 0);
  } finally {
    while (held.length > 0) held.shift()!();
    await worker.stop();
  }
});
