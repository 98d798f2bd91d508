// The sender: one BullMQ worker per channel queue. For each message: still to send and
// its turn in the conversation (one query)? circuit, pair rate and throughput slot (one
// Redis call)? then the Graph call, and the outcome per Meta's error codes: throttle and
// retry with backoff, fail for good, or pause the channel.
import { DelayedError, type Job } from 'bullmq';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics/registry.js';
import { storedEvents, type Publish } from '../../events/hub.js';
import { checkForSend, markAccepted, markFailed, pauseChannel, type ChannelForSend } from '../../store/outbound-store.js';
import type { Pool } from '../../store/pool.js';
import { callbackData } from '../../whatsapp/callback-data.js';
import { classifyGraphError, errorHint } from '../../whatsapp/errors.js';
import type { GraphClient } from '../../whatsapp/graph-client.js';
import type { CircuitBreaker } from '../circuit-breaker.js';
import type { OutboundJobData } from '../outbound.js';
import type { SendGate } from '../send-gate.js';

export interface OutboundDeps {
  readonly pool: Pool;
  readonly graph: GraphClient;
  readonly circuit: CircuitBreaker;
  readonly gate: SendGate;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The channel as it is now (token, pause), refreshed by the caller. */
  readonly channel: () => ChannelForSend | undefined;
  readonly publish?: Publish;
}

/** Slots further ahead than this go back to the queue (delayed) instead of waiting in the worker. */
const IN_PROCESS_WAIT_MS = 1_000;

/** Tells BullMQ to run the job again at `at`, without spending an attempt. */
async function waitUntil(job: Job, token: string | undefined, at: number): Promise<never> {
  if (!token) throw new Error('job token missing');
  await job.moveToDelayed(Math.ceil(at), token);
  throw new DelayedError();
}

export function createOutboundProcessor(deps: OutboundDeps) {
  const { pool, graph, circuit, gate, log, metrics } = deps;
  return async function send(job: Job<OutboundJobData>, token?: string): Promise<string> {
    const channel = deps.channel();
    if (!channel) return waitUntil(job, token, Date.now() + 5_000);
    if (channel.pausedReason || !channel.accessToken) {
      // A paused channel keeps its messages: they leave once an operator fixes the token.
      return waitUntil(job, token, Date.now() + 10_000);
    }
    const check = await checkForSend(pool, job.data.messageId);
    if (!check.send) {
      if (check.reason === 'not_pending') return 'not pending';
      return waitUntil(job, token, Date.now() + 50);
    }
    // A slot this job was delayed to is used once, while fresh (a late wake reserves anew,
    // so jobs promoted together do not leave together).
    const now = Date.now();
    const reserved = job.data.slot !== undefined && now >= job.data.slot - 2 && now - job.data.slot < 100;
    const verdict = await gate.check(job.data.messageId, channel.id, job.data.to, channel.messagesPerSecond, reserved);
    if (!verdict.go) {
      if (verdict.reason === 'circuit') metrics.outbound.circuitWaits.inc();
      return waitUntil(job, token, Date.now() + verdict.waitMs);
    }
    const ahead = verdict.slot - Date.now();
    if (ahead > IN_PROCESS_WAIT_MS) {
      await job.updateData({ ...job.data, slot: verdict.slot });
      return waitUntil(job, token, verdict.slot);
    }
    // A near slot (the usual case under load: concurrency x the number's interval) is
    // waited for here, which costs less than a round trip through the delayed set.
    if (ahead > 1) await new Promise((r) => setTimeout(r, ahead));

    const payload = { ...check.payload, biz_opaque_callback_data: callbackData(job.data.messageId, check.payload.biz_opaque_callback_data) };
    const t0 = performance.now();
    const res = await graph.sendMessage(channel.phoneNumberId, channel.accessToken, payload);
    metrics.outbound.graphDuration.observe({ outcome: res.ok ? 'ok' : String(res.error.code ?? res.error.httpStatus) }, (performance.now() - t0) / 1000);
    if (res.ok) {
      const changes = await markAccepted(pool, job.data.messageId, res.wamid);
      deps.publish?.([{ type: 'message.status', messageId: job.data.messageId, wamid: res.wamid, channelId: channel.id, status: 'accepted' }, ...storedEvents({ newMessages: [], statusChanges: changes })]);
      if (verdict.failures > 0) await circuit.success(channel.id);
      metrics.outbound.sent.inc({ result: 'accepted' });
      return res.wamid;
    }
    const e = res.error;
    // Meta answered: the outcome is known, the message is no longer in flight.
    await gate.done(job.data.messageId);
    const action = classifyGraphError(e);
    metrics.outbound.sent.inc({ result: action });
    if (action === 'permanent') {
      if (await markFailed(pool, job.data.messageId, e, errorHint(e.code))) {
        deps.publish?.({ type: 'message.status', messageId: job.data.messageId, channelId: channel.id, status: 'failed', error: { code: e.code, title: e.title } });
      }
      log.warn({ messageId: job.data.messageId, code: e.code, title: e.title }, 'message failed permanently');
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
