// Two workers (as two processes would, each with its own fitted run lengths) draining the same
// area through a receiver whose speed varies, so runs are cut at different lengths: every event
// arrives once, and each conversation's in order.
import { expect, it } from 'vitest';
import { eventually } from '../helpers/app.js';
import { forwardingKit } from '../helpers/forwarding.js';
import { uniquePrefix } from '../helpers/context.js';

const CONVERSATIONS = 12;
const PER = 40;
const received: { c: number; n: number }[] = [];
let k = 0;
const kit = forwardingKit((data, res) => {
  setTimeout(() => {
    received.push({ c: data.c as number, n: data.n as number });
    res.end('ok');
  }, ++k % 7 === 0 ? 120 : k % 3);
});

it('two workers with their own fitted runs deliver every event once, each conversation in order', async () => {
  const areaId = await kit.area('Varying');
  await kit.db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data, sort_at, created_at)
     SELECT $1, c, 'conversation.assigned', jsonb_build_object('c', c, 'n', i), now() - interval '1 minute' + i * interval '1 ms', now() - interval '1 minute'
     FROM generate_series(1, $2::int) c, generate_series(1, $3::int) i`,
    [areaId, CONVERSATIONS, PER],
  );
  const prefix = uniquePrefix();
  const workers = [1, 2].map(() => kit.worker({ schedule: [0.1], concurrency: 6, perAreaConcurrency: 6, runLength: 50, runWindowMs: 100, pollMs: 10, leaseMs: 30_000, settleMs: 0 }, prefix));
  for (const w of workers) w.forwarder.start();
  try {
    await eventually(async () => (received.length >= CONVERSATIONS * PER ? true : null), { what: 'every event delivered', timeoutMs: 90_000 });
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
  expect(received.length).toBe(CONVERSATIONS * PER);
  for (let c = 1; c <= CONVERSATIONS; c++) {
    expect(received.filter((r) => r.c === c).map((r) => r.n)).toEqual(Array.from({ length: PER }, (_, i) => i + 1));
  }
}, 120_000);
