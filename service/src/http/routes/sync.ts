// GET /v1/channels/:id/sync: a channel's coexistence history sync, as its worker records it.
import { Router } from 'express';
import type { Queue } from 'bullmq';
import { z } from 'zod';
import { syncStatus } from '../../store/coexistence-store.js';
import type { Pool } from '../../store/pool.js';
import { HttpError } from '../errors.js';
import { defineOperations } from '../../openapi/operation.js';

const time = z.iso.datetime().nullable();
export const syncStatusSchema = z
  .object({
    channelId: z.number().int().positive(),
    status: z.enum(['none', 'running', 'completed', 'declined', 'failed']),
    phase: z.number().int(),
    progress: z.number().meta({ description: "Meta's progress of the current phase, 0-100" }),
    chunksReceived: z.number().int(),
    chunksApplied: z.number().int(),
    chunksFailed: z.number().int().meta({ description: 'Dead-lettered and not applied since (a replay applies them)' }),
    messagesStored: z.number().int(),
    error: z.object({ code: z.number().int().nullable(), message: z.string() }).nullable(),
    failedChunks: z.array(z.object({ phase: z.number().int(), chunkOrder: z.number().int(), error: z.string().nullable() })),
    startedAt: time,
    updatedAt: time,
    completedAt: time,
    queue: z.record(z.string(), z.number().int()).meta({ description: 'Jobs of the shared history queue by state: the work ahead of a new chunk' }),
  })
  .meta({ id: 'SyncStatus' });

export const syncOperations = defineOperations('Channels', [
  {
    method: 'get', path: '/v1/channels/:id/sync', summary: "A channel's coexistence history sync", responses: { 200: syncStatusSchema },
    params: z.object({ id: z.coerce.number().int().positive() }), errors: [400],
  },
]);

export interface SyncRouteDeps {
  readonly pool: Pool;
  /** Shared by every channel: its counts say how much history work is ahead of a new chunk. */
  readonly historyQueue: Queue;
}

export function syncRoutes(deps: SyncRouteDeps): Router {
  const r = Router();
  r.get('/channels/:id/sync', async (req, res) => {
    const id = Number(req.params.id);
    if (!Number.isSafeInteger(id) || id <= 0) throw new HttpError(400, 'invalid_channel_id', 'the channel id must be a positive integer');
    const { rows } = await deps.pool.query('SELECT 1 FROM channels WHERE id = $1', [id]);
    if (rows.length === 0) throw new HttpError(404, 'channel_not_found', `no channel ${id}`);
    const [status, queue] = await Promise.all([syncStatus(deps.pool, id), deps.historyQueue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed')]);
    res.json({ ...status, queue });
  });
  return r;
}
