-- A conversation's events left out of order when the transaction storing an earlier one was
-- still open as a later one committed: the claim saw only the later one, its settle time long
-- past, and took it first. Each event now records the transaction ids in use when it was queued
-- (the queueing snapshot's xmax, or past its own id when its insert was the first write): a
-- claim takes it only once every one of them has ended (below the claim's snapshot xmin), so a
-- transaction that could still commit an earlier event is waited for. One that only began
-- writing after the event was queued is a later store, which the settle time covers.
-- A constant default first (no table rewrite; the events already queued need no waiting), then
-- the one each new event gets.
ALTER TABLE forward_events ADD COLUMN wait_xid xid8 NOT NULL DEFAULT '1';
ALTER TABLE forward_events ALTER COLUMN wait_xid
  SET DEFAULT GREATEST(pg_snapshot_xmax(pg_current_snapshot()), (pg_current_xact_id()::text::bigint + 1)::text::xid8);
