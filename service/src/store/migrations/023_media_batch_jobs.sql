-- Downloads are queued as one job per batch of a channel's media (BullMQ's per-job scripts
-- were most of the Redis work of a download). A row remembers its batch's job id: claimed again
-- after a crash between claim and enqueue, it goes back under the same id, so a job still in
-- the queue is not doubled.
ALTER TABLE media ADD COLUMN job_id text;

-- What the poller claims: pending downloads never queued, in claim order, without walking a
-- history backlog already queued; and queued ones by age, for those whose job may be lost.
CREATE INDEX media_unqueued_idx ON media (live DESC, id) WHERE status = 'pending' AND origin = 'inbound' AND enqueued_at IS NULL;
CREATE INDEX media_queued_idx ON media (enqueued_at) WHERE status = 'pending' AND origin = 'inbound' AND enqueued_at IS NOT NULL;
