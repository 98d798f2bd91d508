// The sender: one BullMQ worker per channel queue. For each message: still to send and
// its turn in the conversation (one query)? an earlier call of unknown outcome, circuit,
// pair rate and throughput slot (one Redis call)? then the Graph call, and the outcome per
// Meta's error codes: throttle and retry with backoff, fail for good, or pause the channel.
// A call whose outcome is unknown is not repeated before Meta's status webhook had time to
// name the message; a wamid Meta returned is held until the database has it.
import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics/registry.js';
import { storedEvents, type Publish } from '../../events/hub.js';
import { checkForSend, markAccepted, markFailed, pauseChannel, reopenFailed, type ChannelForSend } from '../../store/outbound-store.js';
import type { Pool } from '../../store/pool.js';
import { callbackData } from '../../whatsapp/callback-data.js';
import { classifyGraphError, errorHint, type GraphError } from '../../whatsapp/errors.js';
import type { GraphClient } from '../../whatsapp/graph-client.js';
import type { CircuitBreaker } from '../circuit-breaker.js';
import type { OutboundJobData } from '../outbound.js';
import type { SendGate } from '../send-gate.js';

export interface OutboundDeps {
  readonly pool: Pool;
  readonly graph: Pick<GraphClient, 'sendMessage'>;
  readonly circuit: CircuitBreaker;
  readonly gate: SendGate;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The channel as it is now (token, pause), refreshed by the caller. */
  readonly channel: () => ChannelForSend | undefined;
  readonly publish?: Publish;
}

/** Slots further ahead than this go back to the queue (delayed) instead of waiting in the worker. */
export const IN_PROCESS_WAIT_MS = 1_000;

/** A retryable Graph API error: the attempt is spent; the last one is what a failed message shows. */
export class GraphSendError extends Error {
  constructor(readonly graph: GraphError) {
    super(`Graph API ${graph.code ?? graph.httpStatus}: ${graph.title}`);
    this.name = 'GraphSendError';
  }
}

/** Tells BullMQ to run the job again at `at`, without spending an attempt. */
async function waitUntil(job: Job, token: string | undefined, at: number): Promise<never> {
  if (!token) throw new Error('job token missing');
  await job.moveToDelayed(Math.ceil(at), token);
  throw new DelayedError();
}

/**
 * How long a message waits for an earlier one of its conversation: an eighth of its age,
 * between 50 ms and 5 s, so a burst to one customer still leaves promptly while a message
 * stuck behind a long wait (a throttle, an unknown outcome) re-checks rarely.
 */
const earlierPendingWaitMs = (job: Job) => Math.min(5_000, Math.max(50, (Date.now() - job.timestamp) / 8));

export function createOutboundProcessor(deps: OutboundDeps) {
  const { pool, graph, circuit, gate, log, metrics } = deps;

  /** Saves Meta's wamid; if the database cannot take it, holds it and tries again later (no attempt spent). */
  async function accepted(job: Job<OutboundJobData>, token: string | undefined, channelId: number, wamid: string, held: boolean): Promise<string> {
    let saved;
    try {
      saved = await markAccepted(pool, job.data.messageId, wamid);
    } catch (err) {
      if (!held) await gate.hold(job.data.messageId, wamid);
      log.warn({ messageId: job.data.messageId, wamid, err: (err as Error).message }, 'wamid not saved yet; held until it is');
      return waitUntil(job, token, Date.now() + 2_000);
    }
    // conversationId: area-limited streams hear only their conversations' events.
    deps.publish?.([{ type: 'message.status', messageId: job.data.messageId, wamid, conversationId: saved.conversationId, channelId, status: 'accepted' }, ...storedEvents({ newMessages: [], statusChanges: saved.changes })]);
    await gate.done(job.data.messageId, channelId, job.data.to).catch((err: Error) => log.warn({ messageId: job.data.messageId, err: err.message }, 'send marker not cleared; it expires'));
    return wamid;
  }

  /**
   * The job's last attempt fails: the message is marked failed first, so a crash before the
   * worker's failed handler runs cannot leave it pending behind a failed job (the handler
   * stays as the backstop, e.g. for a database error here or a job that stalled too often).
   */
  async function lastFailure(job: Job<OutboundJobData>, channelId: number, err: Error): Promise<never> {
    await markExhausted(deps, job, err, channelId).catch((dbErr: Error) => log.warn({ messageId: job.data.messageId, err: dbErr.message }, 'exhausted send not marked failed yet; the failed handler retries'));
    throw err;
  }

  return async function send(job: Job<OutboundJobData>, token?: string): Promise<string> {
    if (job.data.replay) {
      // Only a message the sender failed (no wamid) is reopened: one Meta has stays as it is.
      const reopened = await reopenFailed(pool, job.data.messageId);
      if (reopened) deps.publish?.({ type: 'message.status', messageId: job.data.messageId, conversationId: reopened.conversationId, channelId: reopened.channelId, status: 'pending' });
      await job.updateData({ ...job.data, replay: undefined });
    }
    const channel = deps.channel();
    if (!channel) return waitUntil(job, token, Date.now() + 5_000);
    if (channel.pausedReason || !channel.accessToken) {
      // A paused channel keeps its messages: they leave once an operator fixes the token.
      return waitUntil(job, token, Date.now() + 10_000);
    }
    const check = await checkForSend(pool, job.data.messageId);
    if (!check.send) {
      if (check.reason === 'not_pending') {
        await gate.done(job.data.messageId, channel.id, job.data.to);
        return 'not pending';
      }
      return waitUntil(job, token, Date.now() + earlierPendingWaitMs(job));
    }
    const unknowns = job.data.unknownOutcomes ?? 0;
    if (unknowns >= (job.opts.attempts ?? 1)) {
      // Each call's outcome stayed unknown and no status webhook came within the grace.
      return lastFailure(job, channel.id, new UnrecoverableError(`Graph API outcome unknown after ${unknowns} calls (${job.data.lastUnknown ?? 'no answer'}); no status webhook named the message`));
    }
    // A slot this job was delayed to is used once, while fresh (a late wake reserves anew,
    // so jobs promoted together do not leave together).
    const now = Date.now();
    const reserved = job.data.slot !== undefined && now >= job.data.slot - 2 && now - job.data.slot < 100;
    const verdict = await gate.check(job.data.messageId, channel.id, job.data.to, channel.messagesPerSecond, reserved);
    if (!verdict.go) {
      if (verdict.reason === 'held') return accepted(job, token, channel.id, verdict.wamid, true);
      if (verdict.reason === 'circuit') metrics.outbound.circuitWaits.inc();
      return waitUntil(job, token, Date.now() + verdict.waitMs);
    }
    const ahead = verdict.slot - Date.now();
    if (ahead > IN_PROCESS_WAIT_MS) {
      await job.updateData({ ...job.data, slot: verdict.slot });
      return waitUntil(job, token, verdict.slot);
    }
    // A near slot (the usual case under load: concurrency x the number's interval) is
    // waited for here, which costs less than a round trip through the delayed set; the
    // gate marked the message in flight already.
    if (ahead > 1) await new Promise((r) => setTimeout(r, ahead));

    const payload = { ...check.payload, biz_opaque_callback_data: callbackData(job.data.messageId, check.payload.biz_opaque_callback_data) };
    const t0 = performance.now();
    const res = await graph.sendMessage(channel.phoneNumberId, channel.accessToken, payload);
    metrics.outbound.graphDuration.observe({ outcome: res.ok ? 'ok' : res.outcomeUnknown ? 'unknown' : String(res.error.code ?? res.error.httpStatus) }, (performance.now() - t0) / 1000);
    if (res.ok) {
      if (verdict.failures > 0) await circuit.success(channel.id);
      metrics.outbound.sent.inc({ result: 'accepted' });
      return accepted(job, token, channel.id, res.wamid, false);
    }
    const e = res.error;
    if (res.outcomeUnknown) {
      // Meta may have the message: never call again blindly. The marker stays; after the
      // grace either a status webhook linked the wamid (not pending any more) or we retry.
      metrics.outbound.unknownOutcome.inc();
      metrics.outbound.sent.inc({ result: 'unknown' });
      const until = await gate.unknownOutcome(job.data.messageId);
      if (await circuit.failure(channel.id)) log.error({ channelId: channel.id }, 'circuit opened: Graph API failing for this channel');
      log.warn({ messageId: job.data.messageId, err: e.title }, 'Graph API outcome unknown; waiting for a status webhook before any new call');
      await job.updateData({ ...job.data, slot: undefined, unknownOutcomes: unknowns + 1, lastUnknown: e.title });
      return waitUntil(job, token, until);
    }
    // Meta answered: the outcome is known, the message is no longer in flight.
    await gate.done(job.data.messageId, channel.id, job.data.to);
    const action = classifyGraphError(e);
    metrics.outbound.sent.inc({ result: action });
    if (action === 'permanent') {
      const failed = await markFailed(pool, job.data.messageId, e, errorHint(e.code));
      if (failed) {
        deps.publish?.({ type: 'message.status', messageId: job.data.messageId, conversationId: failed.conversationId, channelId: channel.id, status: 'failed', error: { code: e.code, title: e.title } });
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
    const err = new GraphSendError(e);
    if (job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) return lastFailure(job, channel.id, err);
    throw err;
  };
}

/**
 * A send that will not be tried again (retries ran out, stalled too often, outcome unknown
 * every time) becomes `failed` with its last error, so it stops holding up its conversation
 * and the agent sees why. Replaying its dead letter makes it pending again.
 */
export async function failExhausted(deps: Pick<OutboundDeps, 'pool' | 'log' | 'metrics' | 'publish'>, job: Job<OutboundJobData>, err: Error, channelId: number): Promise<void> {
  // A database blip must not leave the message pending for good: a few tries, spaced out.
  for (let attempt = 0; ; attempt++) {
    try {
      return await markExhausted(deps, job, err, channelId);
    } catch (dbErr) {
      if (attempt >= 5) {
        deps.log.error({ messageId: job.data.messageId, err: (dbErr as Error).message }, 'exhausted send not marked failed');
        return;
      }
      await new Promise((r) => setTimeout(r, 1_000 * 2 ** attempt));
    }
  }
}

/** One try at marking an exhausted send failed; a message already failed (or accepted) stays as it is. */
async function markExhausted(deps: Pick<OutboundDeps, 'pool' | 'metrics' | 'publish'>, job: Job<OutboundJobData>, err: Error, channelId: number): Promise<void> {
  const e: GraphError = err instanceof GraphSendError ? err.graph : { httpStatus: 0, code: null, subcode: null, title: err.message, details: null, fbtraceId: null };
  const failed = await markFailed(deps.pool, job.data.messageId, e, 'retries exhausted; replay the dead letter to send it again');
  if (failed) {
    deps.metrics.outbound.exhausted.inc();
    deps.publish?.({ type: 'message.status', messageId: job.data.messageId, conversationId: failed.conversationId, channelId, status: 'failed', error: { code: e.code, title: e.title } });
  }
}
