// The dead-letter queue is BullMQ's failed set of each queue (jobs keep their data, their
// failure reason and their attempts). Ids are `<queue>:<jobId>`; replay retries the job.
import { Router } from 'express';
import type { Job, Queue } from 'bullmq';
import { z } from 'zod';
import { HttpError } from '../errors.js';
import { defineOperations } from '../../openapi/operation.js';

const listQuery = z.object({
  queue: z.string().optional().meta({ description: 'One queue only (`inbound`, `history`, `outbound-<channel>`, ...)' }),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  offset: z.coerce.number().int().min(0).default(0),
});

export const deadLetterSchema = z
  .object({
    id: z.string().meta({ description: '`<queue>:<jobId>`', example: 'inbound:42' }),
    queue: z.string(),
    name: z.string(),
    reason: z.string().meta({ description: 'The last failure' }),
    attemptsMade: z.number().int(),
    createdAt: z.iso.datetime(),
    failedAt: z.iso.datetime().nullable(),
    data: z.unknown().meta({ description: "The job's data, as queued" }),
  })
  .meta({ id: 'DeadLetter' });

export const deadLetterOperations = defineOperations('Dead letters', [
  { method: 'get', path: '/v1/dead-letters', summary: 'Jobs that failed for good, of every queue or one', query: listQuery, responses: { 200: z.object({ total: z.number().int(), items: z.array(deadLetterSchema) }) } },
  {
    method: 'post', path: '/v1/dead-letters/:id/replay', summary: 'Run a dead letter again, with fresh attempts', errors: [409],
    responses: { 202: z.object({ id: z.string(), status: z.literal('replayed') }) },
  },
]);

export interface DeadLetterOptions {
  /** Runs before a dead letter is retried (e.g. to mark the job a replay). */
  readonly beforeReplay?: (queueName: string, job: Job) => Promise<void>;
}

export function deadLetterRoutes(queues: () => readonly Queue[], opts: DeadLetterOptions = {}): Router {
  const r = Router();
  r.get('/dead-letters', async (req, res) => {
    const byName = new Map(queues().map((q) => [q.name, q]));
    const q = listQuery.safeParse(req.query);
    if (!q.success) throw new HttpError(400, 'invalid_query', 'invalid query', q.error.issues);
    const selected = q.data.queue ? [byName.get(q.data.queue)].filter((x): x is Queue => !!x) : [...byName.values()];
    if (q.data.queue && selected.length === 0) throw new HttpError(404, 'not_found', `no queue ${q.data.queue}`);
    const items = [];
    let total = 0;
    for (const queue of selected) {
      total += await queue.getFailedCount();
      const jobs = await queue.getFailed(q.data.offset, q.data.offset + q.data.limit - 1);
      for (const job of jobs) {
        items.push({
          id: `${queue.name}:${job.id}`,
          queue: queue.name,
          name: job.name,
          reason: job.failedReason,
          attemptsMade: job.attemptsMade,
          createdAt: new Date(job.timestamp).toISOString(),
          failedAt: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
          data: job.data,
        });
      }
    }
    res.json({ total, items });
  });
  r.post('/dead-letters/:id/replay', async (req, res) => {
    const byName = new Map(queues().map((q) => [q.name, q]));
    const sep = req.params.id.indexOf(':');
    const queue = sep > 0 ? byName.get(req.params.id.slice(0, sep)) : undefined;
    const jobId = sep > 0 ? req.params.id.slice(sep + 1) : '';
    const job = queue ? await queue.getJob(jobId) : undefined;
    if (!queue || !job) throw new HttpError(404, 'not_found', `no dead letter ${req.params.id}`);
    if (!(await job.isFailed())) throw new HttpError(409, 'not_failed', `job ${req.params.id} is not in the dead-letter queue`);
    await opts.beforeReplay?.(queue.name, job);
    await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
    res.status(202).json({ id: req.params.id, status: 'replayed' });
  });
  return r;
}
