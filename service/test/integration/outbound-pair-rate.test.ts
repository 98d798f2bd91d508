// Meta's pair rate (131056) when a send reaches Meta late, against the Graph API simulator and
// real Postgres and Redis. Meta's bucket for a pair starts and refills by when each send
// arrives, not by when the sender took its token; an interval long beside the sender's own
// waits (its polling for the earlier message, a delayed job) lets a late arrival show.
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it, vi } from 'vitest';
import { TokenBucket } from '../../../scripts/graph-sim/limits.js';
import { SendGate } from '../../src/queue/send-gate.js';
import { uniquePrefix } from '../helpers/context.js';
import { eventually, json } from '../helpers/app.js';
import { auth, recipients, senderForFile, sendText } from '../helpers/sender.js';

const BURST = 2;
const INTERVAL_MS = 1_500;

const stack = senderForFile(
  { latencyMs: 2, jitterMs: 2, statusDelayMs: 10, pairBurst: BURST, pairIntervalMs: INTERVAL_MS },
  // One attempt: a send that fails once is a dead letter at once.
  { PAIR_BURST: String(BURST), PAIR_INTERVAL_MS: String(INTERVAL_MS), OUTBOUND_ATTEMPTS: '1' },
);

const send = (to: string, body: string) => sendText(stack.app.url, to, body);
const recipient = recipients('55319');

describe('pair rate', () => {
  it('counts a send delayed on its way to Meta by when it arrived: no 131056, order kept', async () => {
    const to = recipient();
    // The pair's first send reaches Meta most of an interval late (a slow network, a stalled
    // worker): Meta's bucket starts then, while the sender's started when it took the token.
    stack.sim.configure({ transitDelays: { [to]: [INTERVAL_MS - 100] } });
    const ids: number[] = [];
    const t0 = Date.now();
    for (let i = 0; i < 4; i++) ids.push(await send(to, `part ${i}`));
    await eventually(async () => stack.sim.sent.filter((s) => s.to === to).length === 4, { timeoutMs: 30_000, what: '4 sent' });
    // The delay did apply: without it this test proves nothing.
    expect(stack.sim.sent.find((s) => s.to === to)!.at - t0).toBeGreaterThanOrEqual(INTERVAL_MS - 150);
    expect(stack.sim.sent.filter((s) => s.to === to).map((s) => (s.body.text as { body: string }).body)).toEqual(ids.map((_, i) => `part ${i}`));
    expect(stack.sim.stats.errors[131056] ?? 0).toBe(0);
  });

  it('settles each take by its own message when a replayed dead letter goes while a newer send is on its way', async () => {
    const to = recipient();
    const bodies = () => stack.sim.sent.filter((s) => s.to === to).map((s) => (s.body.text as { body: string }).body);
    const pairRefusals = stack.sim.stats.errors[131056] ?? 0;
    stack.sim.configure({ failFirst: { [to]: { code: 131000, times: 1 } } });
    const replayed = await send(to, 'replayed');
    const dl = await eventually(async () => {
      const list = await json(await fetch(`${stack.app.url}/v1/dead-letters`, { headers: auth }));
      return list.items.find((i: { data: { messageId: number } }) => i.data.messageId === replayed);
    }, { timeoutMs: 10_000, what: 'dead letter' });
    // Both buckets full again before the race.
    await new Promise((r) => setTimeout(r, BURST * INTERVAL_MS + 200));
    // The newer send reaches Meta two intervals after its take; the replay goes meanwhile.
    stack.sim.configure({ transitDelays: { [to]: [2 * INTERVAL_MS] } });
    const requests = stack.sim.stats.requests;
    await send(to, 'newer');
    await eventually(async () => stack.sim.stats.requests > requests, { what: 'the newer send on its way' });
    expect((await fetch(`${stack.app.url}/v1/dead-letters/${encodeURIComponent(dl.id)}/replay`, { method: 'POST', headers: auth })).status).toBe(202);
    await eventually(async () => bodies().length === 2, { timeoutMs: 10_000, what: 'both sent' });
    // The replay was accepted while the newer send was still on its way.
    expect(bodies()).toEqual(['replayed', 'newer']);
    // Meta counted the newer send when it arrived: one token left, refilling from then.
    for (const body of ['next 1', 'next 2']) await send(to, body);
    await eventually(async () => bodies().length === 4, { timeoutMs: 20_000, what: '4 sent' });
    expect(bodies()).toEqual(['replayed', 'newer', 'next 1', 'next 2']);
    expect((stack.sim.stats.errors[131056] ?? 0) - pairRefusals).toBe(0);
  });
});

describe('the pair gate against a bucket that refills by arrival', () => {
  const redis = new Redis(inject('redisUrl'));
  afterAll(() => redis.quit());
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  // The worker saves a send's outcome (which lets the conversation's next message go) before it
  // settles the pair, so the next check can come first: the take still open counts then.
  it('counts a take still open when the next check comes before its settle', async () => {
    const gate = new SendGate(redis, { prefix: uniquePrefix(), circuitResetMs: 30_000, pairBurst: 2, pairIntervalMs: 1_000, unknownOutcomeGraceMs: 5_000, callTimeoutMs: 10_000, inProcessWaitMs: 1_000 });
    const meta = new TokenBucket(2, 1 / 1_000);
    const to = '5531900000002';
    expect((await gate.check(1, 1, to, 80, false)).go).toBe(true);
    await sleep(900);
    expect(meta.take()).toBe(true); // the first send reaches Meta late; its answer is being saved
    expect((await gate.check(2, 1, to, 80, false)).go).toBe(true); // the next checks before the first's settle
    expect(meta.take()).toBe(true);
    await gate.done(1, 1, to);
    await gate.done(2, 1, to);
    await sleep(200);
    const third = await gate.check(3, 1, to, 80, false);
    expect({ gateGo: third.go, metaWouldAccept: meta.take() }).toEqual({ gateGo: false, metaWouldAccept: false });
  });

  // A worker that died between its call and the settle: the take stays open with no one to settle it.
  it('holds back a take whose settle was lost until its call surely reached Meta, then counts it taken then', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const gate = new SendGate(redis, { prefix: uniquePrefix(), circuitResetMs: 30_000, pairBurst: 2, pairIntervalMs: 1_000, unknownOutcomeGraceMs: 5_000, callTimeoutMs: 1_000, inProcessWaitMs: 1_000 });
      const to = '5531900000003';
      const sendNow = async (id: number) => {
        const go = (await gate.check(id, 1, to, 80, false)).go;
        if (go) await gate.done(id, 1, to);
        return go;
      };
      const t0 = Date.now();
      expect((await gate.check(1, 1, to, 80, false)).go).toBe(true);
      // Within the call's timeout and the minute for a media upload, Meta may still get it.
      vi.setSystemTime(t0 + 30_000);
      expect([await sendNow(2), await sendNow(3)]).toEqual([true, false]);
      // Just past its latest (slot + call timeout + a minute), Meta may have had it a moment
      // ago: of a burst of 2, one goes, and Meta accepts it.
      vi.setSystemTime(t0 + 1_000 + 60_000 + 100);
      const meta = new TokenBucket(2, 1 / 1_000, t0 + 61_000);
      expect(meta.take(t0 + 61_000)).toBe(true);
      const sent = [await sendNow(4), await sendNow(5)];
      expect(sent).toEqual([true, false]);
      expect(meta.take(Date.now())).toBe(true);
      // A burst later the bucket is full again: a whole burst goes.
      vi.setSystemTime(t0 + 61_000 + 2_000 + 200);
      expect([await sendNow(6), await sendNow(7)]).toEqual([true, true]);
    } finally {
      vi.useRealTimers();
    }
  });

  // The worker moves a job whose slot is more than IN_PROCESS_WAIT_MS ahead to the delayed set;
  // a wake 100 ms or more after that slot checks the gate again as a new send. No call was made
  // in between: the take of the first check is still the message's.
  it('takes one token for a delayed job woken late: its one call is one send at Meta', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const t0 = Date.now();
      const interval = 60_000;
      const gate = new SendGate(redis, { prefix: uniquePrefix(), circuitResetMs: 30_000, pairBurst: 2, pairIntervalMs: interval, rateBurst: 1, unknownOutcomeGraceMs: 5_000, callTimeoutMs: 1_000, inProcessWaitMs: 1_000 });
      const meta = new TokenBucket(2, 1 / interval, t0);
      const to = '5531900000004';
      expect((await gate.check(1, 1, '5531900000005', 0.5, false)).go).toBe(true);
      const first = await gate.check(2, 1, to, 0.5, false);
      expect(first.go && first.slot - t0).toBe(2_000); // more than 1 s ahead: delayed, no call
      vi.setSystemTime(t0 + 5_000); // woken late
      expect((await gate.check(2, 1, to, 0.5, false)).go).toBe(true);
      expect(meta.take(Date.now())).toBe(true); // its one call
      await gate.done(2, 1, to);
      const third = await gate.check(3, 1, to, 0.5, false);
      expect({ gateGo: third.go, metaWouldAccept: meta.take(Date.now()) }).toEqual({ gateGo: true, metaWouldAccept: true });
    } finally {
      vi.useRealTimers();
    }
  });

  it('lets a delayed job woken late go on its own unused take when the burst is 1', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const t0 = Date.now();
      const gate = new SendGate(redis, { prefix: uniquePrefix(), circuitResetMs: 30_000, pairBurst: 1, pairIntervalMs: 6_000, rateBurst: 1, unknownOutcomeGraceMs: 60_000, callTimeoutMs: 10_000, inProcessWaitMs: 1_000 });
      const to = '5531900000006';
      expect((await gate.check(1, 1, '5531900000007', 0.5, false)).go).toBe(true);
      expect((await gate.check(2, 1, to, 0.5, false)).go).toBe(true); // slot 2 s ahead: delayed
      vi.setSystemTime(t0 + 5_000);
      const late = await gate.check(2, 1, to, 0.5, false);
      // Nothing reached Meta for this recipient: its bucket is full, the one send goes now.
      expect(late.go ? 'go' : late.reason).toBe('go');
    } finally {
      vi.useRealTimers();
    }
  });

  // A call whose outcome stayed unknown ended by its timeout: Meta had it by then if ever.
  it('counts the take of a call of unknown outcome as taken at its re-run, not open until its latest', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const t0 = Date.now();
      const interval = 6_000;
      const gate = new SendGate(redis, { prefix: uniquePrefix(), circuitResetMs: 30_000, pairBurst: 1, pairIntervalMs: interval, unknownOutcomeGraceMs: 5_000, callTimeoutMs: 10_000, inProcessWaitMs: 1_000 });
      const meta = new TokenBucket(1, 1 / interval, t0);
      const to = '5531900000008';
      expect((await gate.check(2, 1, to, 80, false)).go).toBe(true);
      vi.setSystemTime(t0 + 10_000); // the call times out; Meta had it at the latest now
      expect(meta.take(Date.now())).toBe(true);
      await gate.unknownOutcome(2);
      const seen: Record<string, string> = {};
      for (const ms of [15_100, 21_200]) {
        vi.setSystemTime(t0 + ms);
        const v = await gate.check(2, 1, to, 80, false);
        seen[ms] = v.go ? 'go' : v.reason;
      }
      // Its re-run waits one interval from its check, and Meta accepts it then.
      expect(seen).toEqual({ 15100: 'pair', 21200: 'go' });
      expect(meta.take(Date.now())).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  // The re-run after an unknown outcome takes anew; delayed to its slot, it makes no call
  // before its wake, which uses that take.
  it('lets the re-run of a call of unknown outcome, delayed and woken late, go on its new take', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const t0 = Date.now();
      const gate = new SendGate(redis, { prefix: uniquePrefix(), circuitResetMs: 30_000, pairBurst: 2, pairIntervalMs: 60_000, rateBurst: 1, unknownOutcomeGraceMs: 5_000, callTimeoutMs: 1_000, inProcessWaitMs: 1_000 });
      const to = '5531900000010';
      expect((await gate.check(2, 1, to, 0.5, false)).go).toBe(true);
      vi.setSystemTime(t0 + 1_000);
      await gate.unknownOutcome(2);
      vi.setSystemTime(t0 + 6_100);
      expect((await gate.check(1, 1, '5531900000011', 0.5, false)).go).toBe(true);
      const rerun = await gate.check(2, 1, to, 0.5, false);
      expect(rerun.go && rerun.slot - Date.now()).toBe(2_000); // more than 1 s ahead: delayed
      vi.setSystemTime(t0 + 12_000);
      const late = await gate.check(2, 1, to, 0.5, false);
      expect(late.go ? 'go' : late.reason).toBe('go');
    } finally {
      vi.useRealTimers();
    }
  });

  // A rolling deploy: an older pod took a token for message 7 (the field `open` = 7, taken at
  // `ts`) and its call is still on its way when this version checks the pair.
  it('counts a take an older version left open (field `open`) as open until its call\'s latest', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const t0 = Date.now();
      const prefix = uniquePrefix();
      const gate = new SendGate(redis, { prefix, circuitResetMs: 30_000, pairBurst: 2, pairIntervalMs: 1_000, unknownOutcomeGraceMs: 5_000, callTimeoutMs: 10_000, inProcessWaitMs: 1_000 });
      const to = '5531900000009';
      await redis.hset(`${prefix}:pair:1:${to}`, 'tokens', '1', 'ts', String(t0), 'open', '7');
      await redis.pexpire(`${prefix}:pair:1:${to}`, 60_000);
      vi.setSystemTime(t0 + 1_500);
      const meta = new TokenBucket(2, 1 / 1_000, t0 + 1_500);
      expect(meta.take(Date.now())).toBe(true); // message 7 reaches Meta now (a slow network)
      const a = await gate.check(8, 1, to, 80, false);
      const metaA = a.go ? meta.take(Date.now()) : 'not sent';
      const b = await gate.check(9, 1, to, 80, false);
      const metaB = b.go ? meta.take(Date.now()) : 'not sent';
      // Each send the gate lets go, Meta accepts (no 131056).
      expect({ a: [a.go, metaA], b: [b.go, metaB] }).toEqual({ a: [true, true], b: [false, 'not sent'] });
    } finally {
      vi.useRealTimers();
    }
  });
});
