// Outbound queues: one per channel, so one number's rate limit, circuit or paused token
// never holds up another's.
import { Queue, type ConnectionOptions, type Job } from 'bullmq';
import type { Publish } from '../events/hub.js';
import { reopenFailed } from '../store/outbound-store.js';
import type { Pool } from '../store/pool.js';

export const outboundQueueName = (channelId: number) => `outbound-${channelId}`;

export interface OutboundJobData {
  readonly messageId: number;
  /** The recipient, for the pair-rate check before any database work. */
  readonly to: string;
  /** The throughput slot this job reserved before it was delayed to it (epoch ms). */
  readonly slot?: number;
  /** Calls whose outcome stayed unknown (no answer, no status webhook within the grace). */
  readonly unknownOutcomes?: number;
  /** Why the last of them got no answer. */
  readonly lastUnknown?: string;
}

export const outboundJobId = (messageId: number) => `msg-${messageId}`;

/**
 * Before a dead letter of an outbound queue runs again: its message, failed when the
 * retries ran out, is pending again (and said so to listeners), and the job forgets the
 * calls of unknown outcome it counted.
 */
export function replayOutbound(pool: Pool, publish: Publish) {
  return async (queueName: string, job: Job): Promise<void> => {
    if (!queueName.startsWith('outbound-')) return;
    const data = job.data as OutboundJobData;
    await job.updateData({ messageId: data.messageId, to: data.to } satisfies OutboundJobData);
    const reopened = await reopenFailed(pool, data.messageId);
    if (reopened) publish({ type: 'message.status', messageId: data.messageId, conversationId: reopened.conversationId, channelId: reopened.channelId, status: 'pending' });
  };
}

/** Producer side: a Queue per channel, made on first use. */
export class OutboundQueues {
  private readonly queues = new Map<number, Queue<OutboundJobData>>();

  constructor(
    private readonly connection: ConnectionOptions,
    private readonly prefix: string,
    private readonly jobOpts: { attempts: number; backoffMs: number },
  ) {}

  get(channelId: number): Queue<OutboundJobData> {
    let q = this.queues.get(channelId);
    if (!q) {
      q = new Queue<OutboundJobData>(outboundQueueName(channelId), { connection: this.connection, prefix: this.prefix });
      this.queues.set(channelId, q);
    }
    return q;
  }

  all(): Queue<OutboundJobData>[] {
    return [...this.queues.values()];
  }

  /** Enqueues messages by id; the job id makes a second enqueue of the same message a no-op. */
  async enqueue(items: readonly { messageId: number; channelId: number; to: string }[]): Promise<void> {
    const byChannel = new Map<number, { messageId: number; to: string }[]>();
    for (const it of items) byChannel.set(it.channelId, [...(byChannel.get(it.channelId) ?? []), { messageId: it.messageId, to: it.to }]);
    await Promise.all(
      [...byChannel].map(([channelId, ids]) =>
        this.get(channelId).addBulk(
          ids.map(({ messageId, to }) => ({
            name: 'send',
            data: { messageId, to },
            opts: {
              jobId: outboundJobId(messageId),
              attempts: this.jobOpts.attempts,
              backoff: { type: 'exponential', delay: this.jobOpts.backoffMs },
              // Kept a day so a relay re-enqueue of a finished message stays a no-op.
              removeOnComplete: { age: 86_400 },
              removeOnFail: false,
            },
          })),
        ),
      ),
    );
  }

  async close(): Promise<void> {
    await Promise.all(this.all().map((q) => q.close()));
  }
}
