// Wake-ups: each stored event is claimed once it has settled, woken by its own store, even when
// another store's wake-up was already pending (with the poll far away, nothing else would claim it).
import { expect, it } from 'vitest';
import { eventually } from '../helpers/app.js';
import { forwardingKit } from '../helpers/forwarding.js';

const SETTLE_MS = 2_000;
const arrivals = new Map<number, number>();
const kit = forwardingKit((data, res) => {
  arrivals.set(data.c as number, Date.now());
  res.end('ok');
});

it('an event stored while another store\'s wake-up is pending is claimed at its own settle time, not at the poll', async () => {
  const areaId = await kit.area('Wake');
  const worker = kit.worker({ schedule: [0.1], concurrency: 10, pollMs: 600_000, leaseMs: 30_000, settleMs: SETTLE_MS });
  const { forwarder } = worker;
  // Stored like the inbound path stores: committed, then the worker told.
  const store = async (c: number) => {
    await kit.db.pool.query("INSERT INTO forward_events (area_id, conversation_id, type, data) VALUES ($1, $2::bigint, 'conversation.assigned', jsonb_build_object('c', $3::int))", [areaId, c, c]);
    const at = Date.now();
    forwarder.wake();
    return at;
  };
  forwarder.start();
  try {
    // The first claim (at start) found nothing: the worker now sleeps until a wake-up or the poll.
    await new Promise((r) => setTimeout(r, 200));
    const first = await store(1);
    // Half a settle time later: the claims that follow the first delivery are long over when it settles.
    await new Promise((r) => setTimeout(r, SETTLE_MS / 2));
    const second = await store(2);
    await eventually(async () => (arrivals.size === 2 ? true : null), { what: 'both events delivered long before the poll', timeoutMs: 15_000 });
    // Never before they settled.
    expect(arrivals.get(1)! - first).toBeGreaterThanOrEqual(SETTLE_MS - 10);
    expect(arrivals.get(2)! - second).toBeGreaterThanOrEqual(SETTLE_MS - 10);
  } finally {
    await worker.stop();
  }
}, 30_000);
