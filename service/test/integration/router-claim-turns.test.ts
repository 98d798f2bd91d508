// Every waiting conversation gets its turn. A claim walks an area's queues only until it found as
// many due heads as the area may take, starting after the queue it took last: with fewer slots
// than conversations waiting, a queue whose run just ended must not be taken again ahead of the
// queues that waited all along (walking from the first conversation every time would serve the
// first few conversations over and over while the others wait).
import { expect, it } from 'vitest';
import { claimRuns } from '../../src/router/forwarding/outbox.js';
import { eventually } from '../helpers/app.js';
import { forwardingKit } from '../helpers/forwarding.js';

const CONVERSATIONS = 8;
const EACH = 4;
/** Conversation of each delivered event, in arrival order. */
const received: number[] = [];
const kit = forwardingKit((data, res) => {
  received.push(data.c as number);
  res.end('ok');
});

it('with one slot and runs of one event, the queues take turns: every conversation before any one twice', async () => {
  const areaId = await kit.area('Turns');
  // Each conversation's events stored together, conversation after conversation (ids and due
  // times in that order), long settled.
  await kit.db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data, sort_at, created_at, next_attempt_at)
     SELECT $1, c, 'conversation.assigned', jsonb_build_object('c', c), now() - interval '1 minute' + i * interval '1 ms', now() - interval '1 minute', now() - interval '1 minute'
     FROM generate_series(1, $2::int) c, generate_series(1, $3::int) i ORDER BY c, i`,
    [areaId, CONVERSATIONS, EACH],
  );
  const worker = kit.worker({ schedule: [1], concurrency: 1, runLength: 1, pollMs: 20, leaseMs: 30_000, settleMs: 0 });
  worker.forwarder.start();
  try {
    await eventually(async () => received.length >= CONVERSATIONS * EACH, { what: 'every event delivered', timeoutMs: 60_000 });
  } finally {
    await worker.stop();
  }
  // Round after round, each conversation once per round.
  for (let round = 0; round < EACH; round++) {
    expect(new Set(received.slice(round * CONVERSATIONS, (round + 1) * CONVERSATIONS)).size, `round ${round + 1}: ${received.join(',')}`).toBe(CONVERSATIONS);
  }
});

it('a claim that wrapped around to the first conversations goes on after the last one it took there, not after the highest', async () => {
  const { rows } = await kit.db.pool.query<{ id: string }>("INSERT INTO areas (name, webhook_url) VALUES ('Wrap', 'http://127.0.0.1:9/') RETURNING id");
  const area = Number(rows[0]!.id);
  await kit.db.pool.query(
    `INSERT INTO forward_events (area_id, conversation_id, type, data, sort_at, created_at, next_attempt_at)
     SELECT $1, c, 'conversation.assigned', jsonb_build_object('c', c), now() - interval '1 minute' + i * interval '1 ms', now() - interval '1 minute', now() - interval '1 minute'
     FROM generate_series(1, $2::int) c, generate_series(1, 3) i ORDER BY c, i`,
    [area, CONVERSATIONS],
  );
  /** One claim of `slots` queues with runs of one event; its events delivered at once. Gives the conversations it served. */
  const claim = async (slots: number) => {
    const events = (await claimRuns(kit.db.pool, {
      queues: slots, runLength: 1, leaseMs: 30_000, settleMs: 0, maxOrderWaitMs: 10_000,
      skipAreas: [], areaCaps: new Map(), defaultCap: slots, runLengths: new Map(),
    })).flat().filter((e) => e.areaId === area);
    await kit.db.pool.query("UPDATE forward_events SET status = 'succeeded', attempts = 1, finished_at = now(), locked_until = NULL WHERE id = ANY($1::bigint[])", [events.map((e) => e.id)]);
    return events.map((e) => e.conversationId!).sort((a, b) => a - b);
  };
  expect(await claim(3)).toEqual([1, 2, 3]);
  expect(await claim(3)).toEqual([4, 5, 6]);
  // From after 6 to the end, then from the start: the walk ends at 2.
  expect(await claim(4)).toEqual([1, 2, 7, 8]);
  // 3 to 6 waited longer than 1 and 2, just served again.
  expect(await claim(4)).toEqual([3, 4, 5, 6]);
});
