-- The media poller's claim read every pending download on each poll (every MEDIA_POLL_MS):
-- those not queued yet, sorted whole for the first 500, and those queued and still downloading,
-- only to drop them. A history backlog of 50,000 media cost each poll tens of milliseconds of
-- Postgres while it downloaded. Two indexes hold the two things a claim takes, in its order:
-- media never queued (live first, then by id), and queued ones by when (those queued long ago,
-- whose job a crash may have lost). Queued media leave the first as they are claimed.
-- The price: with enqueued_at indexed, a claim's update is no longer HOT (about 280 bytes more
-- WAL and 0.01-0.03 ms more Postgres CPU per media when nothing is waiting); with 300 media
-- downloading, the old claim already cost 0.18 ms per media claimed and stored, this one 0.10.
--
-- Migrations run in one transaction, so these are plain CREATE INDEX (not CONCURRENTLY): they
-- block writes to media while they build, which is over in moments with only the pending rows
-- indexed. media_to_enqueue_idx (018) stays: the backlog gauge counts pending media through it,
-- and the previous version's poller claims through it until the rollout ends.
CREATE INDEX media_to_queue_idx ON media (live DESC, id) WHERE status = 'pending' AND origin = 'inbound' AND enqueued_at IS NULL;
CREATE INDEX media_queued_idx ON media (live, enqueued_at) WHERE status = 'pending' AND origin = 'inbound' AND enqueued_at IS NOT NULL;
