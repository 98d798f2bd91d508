// A web process's realtime fan-out on a real Redis channel: batches published close together
// reach clients as one write (a lone batch at once), and streams grouped by what they may see
// each get exactly their events, in order, with one area lookup per batch for all groups.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { EventHub, typeFilter } from '../../src/events/hub.js';
import { Fanout, type Delivery } from '../../src/events/fanout.js';
import { createLogger } from '../../src/log.js';
import { uniquePrefix } from '../helpers/context.js';
import { eventually } from '../helpers/app.js';

const log = createLogger('silent');
let pub: Redis;
const hubs: EventHub[] = [];

function hub(channel: string, flushIntervalMs?: number): EventHub {
  const h = new EventHub(new Redis(inject('redisUrl')), channel, log, flushIntervalMs);
  hubs.push(h);
  return h;
}
/** Resolves once the hub's subscription holds (a publish before it would be lost). */
const subscribed = (h: EventHub) => new Promise<void>((resolve) => h.onSubscribed(resolve));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(() => {
  pub = new Redis(inject('redisUrl'));
});
afterAll(async () => {
  for (const h of hubs) await h.close();
  pub.disconnect();
});

describe('EventHub', () => {
  it('sends a batch after a quiet interval at once, and the batches published within the interval after it together', async () => {
    const channel = `${uniquePrefix()}:events`;
    const h = hub(channel, 1_000);
    const flushes: { at: number; ns: unknown[] }[] = [];
    const ready = subscribed(h);
    h.listen((events) => flushes.push({ at: performance.now(), ns: events.map((e) => e.n) }));
    await ready;
    const t0 = performance.now();
    await pub.publish(channel, JSON.stringify([{ type: 'message.created', n: 0 }]));
    await eventually(async () => flushes.length === 1, { what: 'first batch' });
    for (let n = 1; n <= 3; n++) {
      await pub.publish(channel, JSON.stringify([{ type: 'message.created', n }]));
      await sleep(10);
    }
    await eventually(async () => flushes.flatMap((f) => f.ns).length === 4, { what: 'every event' });
    expect(flushes.map((f) => f.ns)).toEqual([[0], [1, 2, 3]]);
    expect(flushes[0]!.at - t0).toBeLessThan(1_000);
  });
});

describe('Fanout', () => {
  it('gives each group of streams exactly its events in order, looks areas up once per batch, and ends a revoked token\'s streams only', async () => {
    const channel = `${uniquePrefix()}:events`;
    const h = hub(channel, 0);
    const lookups: number[][] = [];
    // The first lookup is the slowest: a later batch must still not overtake it.
    const areaOf = new Map([[10, 1], [20, 2]]);
    const fanout = new Fanout(h, async (ids) => {
      lookups.push([...ids].sort());
      await sleep(lookups.length === 1 ? 300 : 0);
      return new Map(ids.flatMap((id) => (areaOf.has(id) ? [[id, areaOf.get(id)!] as [number, number]] : [])));
    });
    const got = new Map<string, string[]>();
    const revoked: string[] = [];
    const open = (name: string, tokenId: number | null, types: string, areaIds: number[] | null, transport: 'sse' | 'ws' = 'sse') => {
      got.set(name, []);
      const deliver = (d: Delivery) => got.get(name)!.push(...d.events.map((e) => `${e.type}@${String(e.conversationId)}`));
      return fanout.add({ tokenId, deliver, revoked: () => revoked.push(name) }, { wanted: typeFilter(types), areaIds, transport });
    };
    const ready = subscribed(h);
    open('all-a', null, '', null);
    open('all-b', 7, '', null, 'ws');
    open('created', 8, 'message.created', null);
    open('area1', 9, '', [1]);
    open('area1-updates', 9, 'conversation.updated', [1]);
    open('area2-created', 10, 'message.created', [2]);
    await ready;
    await pub.publish(channel, JSON.stringify([{ type: 'message.created', conversationId: 10 }, { type: 'conversation.updated', conversationId: 10 }, { type: 'message.created', conversationId: 20 }]));
    await sleep(50);
    await pub.publish(channel, JSON.stringify([{ type: 'conversation.updated', conversationId: 20 }, { type: 'message.created', conversationId: 10 }]));
    await eventually(async () => got.get('area1')!.length === 3 && got.get('area2-created')!.length === 1 && got.get('all-a')!.length === 5, { what: 'every group served' });
    expect(Object.fromEntries(got)).toEqual({
      'all-a': ['message.created@10', 'conversation.updated@10', 'message.created@20', 'conversation.updated@20', 'message.created@10'],
      'all-b': ['message.created@10', 'conversation.updated@10', 'message.created@20', 'conversation.updated@20', 'message.created@10'],
      created: ['message.created@10', 'message.created@20', 'message.created@10'],
      area1: ['message.created@10', 'conversation.updated@10', 'message.created@10'],
      'area1-updates': ['conversation.updated@10'],
      'area2-created': ['message.created@20'],
    });
    expect(lookups).toEqual([[10, 20], [10, 20]]);

    await pub.publish(channel, JSON.stringify([{ type: 'token.revoked', tokenId: 9 }]));
    await eventually(async () => revoked.length === 2, { what: 'revoked streams' });
    expect(revoked.sort()).toEqual(['area1', 'area1-updates']);
  });
});
