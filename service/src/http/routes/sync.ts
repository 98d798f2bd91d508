// GET /v1/channels/:id/sync: a channel's coexistence history sync, as its worker records it.
import { Router } from 'express';
import type { Queue } from 'bullmq';
import { syncStatus } from '../../store/coexistence-store.js';
import type { Pool } from '../../store/pool.js';
import { HttpError } from '../errors.js';

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
