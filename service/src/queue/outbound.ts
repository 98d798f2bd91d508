// Outbound queues: one per channel, so one number's rate limit, circuit or paused token
// never holds up another's.
import { Queue, type ConnectionOptions, type Job } from 'bullmq';

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
  /** A replayed dead letter: its message, failed by the sender, is to be reopened before anything else. */
  readonly replay?: boolean;
}

export const outboundJobId = (messageId: number) => `msg-${messageId}`;

/**
 * Before a dead letter of an outbound queue runs again: the job forgets the calls of
 * unknown outcome it counted and is marked a replay; its first run reopens the failed
 * message. Reopening here instead would leave the message pending behind a failed job
 * whenever the retry itself did not happen.
 */
export function replayOutbound() {
  return async (queueName: string, job: Job): Promise<void> => {
    if (!queueName.startsWith('outbound-')) return;
    const data = job.data as OutboundJobData;
    await job.updateData({ messageId: data.messageId, to: data.to, replay: true } satisfies OutboundJobData);
  };
}

/** Queue errors are reported once per this long at most, whichever channel's queue raised them. */
const ERROR_REPORT_MS = 10_000;

/** Producer side: a Queue per channel, made on first use. */
export class OutboundQueues {
  private readonly queues = new Map<number, Queue<OutboundJobData>>();
  private reportedAt = -Infinity;

  constructor(
    private readonly connection: ConnectionOptions,
    private readonly prefix: string,
    private readonly jobOpts: { attempts: number; backoffMs: number },
    /**
     * Told of a queue error (Redis away). Without a listener BullMQ prints each one to the console;
     * the queues share one connection, so one lost connection is an error on every channel's queue.
     */
    private readonly onError: (err: Error) => void,
  ) {}

  get(channelId: number): Queue<OutboundJobData> {
    let q = this.queues.get(channelId);
    if (!q) {
      q = new Queue<OutboundJobData>(outboundQueueName(channelId), { connection: this.connection, prefix: this.prefix });
      q.on('error', (err) => this.report(err));
      this.queues.set(channelId, q);
    }
    return q;
  }

  private report(err: Error): void {
    const now = Date.now();
    if (now - this.reportedAt < ERROR_REPORT_MS) return;
    this.reportedAt = now;
    this.onError(err);
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
