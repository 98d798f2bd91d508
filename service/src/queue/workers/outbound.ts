// The sender: one BullMQ worker per channel queue. For each message: still to send? its
// turn in the conversation? pair rate? circuit? then the Graph call, and the outcome per
// Meta's error codes: throttle and retry with backoff, fail for good, or pause the channel.
import { DelayedError, type Job } from 'bullmq';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics/registry.js';
import { clearSending, hasEarlierPending, loadForSend, markAccepted, markFailed, markSending, pauseChannel, type ChannelForSend } from '../../store/outbound-store.js';
import type { Pool } from '../../store/pool.js';
import { classifyGraphError, errorHint } from '../../whatsapp/errors.js';
import type { GraphClient } from '../../whatsapp/graph-client.js';
import type { CircuitBreaker } from '../circuit-breaker.js';
import type { PairPacer } from '../pair-pacer.js';
import type { RatePacer } from '../rate-pacer.js';
import type { OutboundJobData } from '../outbound.js';
import { callbackData } from '../../whatsapp/callback-data.js';

export interface OutboundDeps {
  readonly pool: Pool;
  readonly graph: GraphClient;
  readonly circuit: CircuitBreaker;
  readonly pacer: PairPacer;
  readonly rate: RatePacer;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The channel as it is now (token, pause), refreshed by the caller. */
  readonly channel: () => ChannelForSend | undefined;
  /** After a crash mid-send, wait this long for Meta's status webhook before sending again. */
  readonly crashGraceMs: number;
  readonly publish?: (event: Record<string, unknown>) => void;
}

/** Tells BullMQ to run the job again at `at`, without spending an attempt. */
async function waitUntil(job: Job, token: string | undefined, at: number): Promise<never> {
  if (!token) throw new Error('job token missing');
  await job.moveToDelayed(at, token);
  throw new DelayedError();
}

export function createOutboundProcessor(deps: OutboundDeps) {
  const { pool, graph, circuit, pacer, rate, log, metrics } = deps;
  return async function send(job: Job<OutboundJobData>, token?: string): Promise<string> {
    const channel = deps.channel();
    if (!channel) return waitUntil(job, token, Date.now() + 5_000);
    if (channel.pausedReason || !channel.accessToken) {
      // A paused channel keeps its messages: they leave once an operator fixes the token.
      return waitUntil(job, token, Date.now() + 10_000);
    }
    const msg = await loadForSend(pool, job.data.messageId);
    if (!msg) return 'not pending';
    if (await hasEarlierPending(pool, msg.conversationId, msg.id)) return waitUntil(job, token, Date.now() + 50);
    // An earlier attempt called Meta and never learned the outcome (the worker died): its
    // status webhook, carrying our id, may still bring the wamid. Wait for it a moment
    // before sending again, so a crash rarely means a duplicate.
    if (msg.sendingAt && Date.now() - msg.sendingAt.getTime() < deps.crashGraceMs) {
      return waitUntil(job, token, msg.sendingAt.getTime() + deps.crashGraceMs);
    }
    const breaker = await circuit.allow(channel.id);
    if (!breaker.allowed) {
      metrics.outbound.circuitWaits.inc();
      return waitUntil(job, token, Date.now() + breaker.waitMs);
    }
    // A slot reserved before this job was delayed to it is used once, while fresh.
    const now = Date.now();
    const reserved = job.data.slot !== undefined && now >= job.data.slot - 2 && now - job.data.slot < 1_000;
    const pairWait = await pacer.take(channel.id, msg.to);
    if (pairWait > 0) return waitUntil(job, token, Date.now() + pairWait);
    if (!reserved) {
      const slot = await rate.reserve(channel.id, channel.messagesPerSecond);
      if (slot - Date.now() > 2) {
        await job.updateData({ ...job.data, slot });
        return waitUntil(job, token, slot);
      }
    }

    const payload = { ...msg.payload, biz_opaque_callback_data: callbackData(msg.id, msg.payload.biz_opaque_callback_data) };
    if (!(await markSending(pool, msg.id))) return 'not pending';
    const t0 = performance.now();
    const res = await graph.sendMessage(channel.phoneNumberId, channel.accessToken, payload);
    metrics.outbound.graphDuration.observe({ outcome: res.ok ? 'ok' : String(res.error.code ?? res.error.httpStatus) }, (performance.now() - t0) / 1000);
    if (res.ok) {
      await markAccepted(pool, msg.id, res.wamid);
      await circuit.success(channel.id);
      metrics.outbound.sent.inc({ result: 'accepted' });
      return res.wamid;
    }
    const e = res.error;
    await clearSending(pool, msg.id);
    const action = classifyGraphError(e);
    metrics.outbound.sent.inc({ result: action });
    if (action === 'permanent') {
      if (await markFailed(pool, msg.id, e, errorHint(e.code))) {
        deps.publish?.({ type: 'message.status', messageId: msg.id, status: 'failed', error: { code: e.code, title: e.title } });
      }
      log.warn({ messageId: msg.id, code: e.code, title: e.title }, 'message failed permanently');
      return 'failed';
    }
    if (action === 'pause_channel') {
      await pauseChannel(pool, channel.id, `${e.code}: ${e.title}`);
      log.error({ channelId: channel.id, code: e.code, title: e.title }, 'channel paused; its messages wait until it is fixed');
      return waitUntil(job, token, Date.now() + 10_000);
    }
    if (action === 'throttle') {
      // Meta's pacing, not an outage: wait a little, no attempt spent, breaker untouched.
      return waitUntil(job, token, Date.now() + (e.code === 131056 ? 6_000 : 1_000));
    }
    if (await circuit.failure(channel.id)) log.error({ channelId: channel.id }, 'circuit opened: Graph API failing for this channel');
    throw new Error(`Graph API ${e.code ?? e.httpStatus}: ${e.title}`);
  };
}
