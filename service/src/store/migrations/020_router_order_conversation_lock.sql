-- A queued event waited for every write transaction running when it was queued (wait_xid, 019):
-- at a steady inbound rate storing transactions always overlap, so events waited for other
-- conversations' stores, and nothing woke the claims when those ended (the next poll did).
-- Now whoever queues an event holds its conversation's order lock (shared: stores never wait
-- for each other) until it commits or rolls back. A claim that finds the lock free (a try of the
-- exclusive lock, for the length of one statement) knows every event of that conversation queued
-- so far has committed, and reads the queue again in its next statement, whose snapshot sees
-- them all. An event is claimable once its conversation's lock is free or, as before, once the
-- transactions running when it was queued ended: either way nothing can still commit an event of
-- its conversation that was stored before it. A store that begins queueing only after the claim
-- is a later store, which the settle time covers.
-- Taken before the row exists (BEFORE ROW): a queued, uncommitted event always has its lock held.
-- The key is the conversation id hashed to 32 bits in a key space of its own: two conversations
-- sharing a key only wait for each other's stores.
-- wait_xid stays, filled as before: the previous version's workers claim by it during a rolling
-- deploy; the release after this one drops it.
CREATE FUNCTION forward_order_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock_shared(2003201906, hashint8(NEW.conversation_id));
  RETURN NEW;
END $$;
-- An event moved into another conversation (a merge) joins that conversation's queue.
CREATE TRIGGER forward_events_order_lock BEFORE INSERT OR UPDATE OF conversation_id ON forward_events
  FOR EACH ROW WHEN (NEW.conversation_id IS NOT NULL) EXECUTE FUNCTION forward_order_lock();
