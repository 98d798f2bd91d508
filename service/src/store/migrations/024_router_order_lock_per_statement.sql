-- Queueing a stored batch's events took each event's conversation order lock (020) in a row
-- trigger: one plpgsql call and one statement per forwarded event. The two forwarding triggers
-- now take the locks inside their inserting statement instead: each routed row takes its
-- conversation's lock as it is read (the materialized CTE every queued row comes from, sorted
-- before any insert), so every queued event still has its lock held before it exists, until
-- its store commits or rolls back. The row trigger stays for the other writers (assignments,
-- releases, a merge moving events), which queue an event or two at a time.
CREATE OR REPLACE FUNCTION router_forward_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  WITH routed AS MATERIALIZED (
    SELECT n.id, n.conversation_id, n.channel_id, n.wa_timestamp, r.area_id, r.assigned_at,
           pg_advisory_xact_lock_shared(2003201906, hashint8(n.conversation_id))::text AS order_locked
    FROM new_rows n
    JOIN conversation_routes r ON r.conversation_id = n.conversation_id AND r.state = 'assigned'
    WHERE n.direction = 'inbound' AND n.source = 'live'
  ), live AS (
    SELECT a.id, a.events, a.channel_ids FROM areas a
    WHERE a.id IN (SELECT area_id FROM routed) AND a.disabled_at IS NULL
    FOR KEY SHARE
  )
  INSERT INTO forward_events (area_id, conversation_id, type, message_id, sort_at, sort_seq)
  SELECT x.area_id, x.conversation_id, 'message.received', x.id, GREATEST(x.wa_timestamp, x.assigned_at), x.wa_timestamp
  FROM routed x JOIN live a ON a.id = x.area_id
  WHERE (a.events IS NULL OR 'message.received' = ANY (a.events))
    AND (a.channel_ids IS NULL OR x.channel_id = ANY (a.channel_ids))
  ORDER BY x.conversation_id, x.wa_timestamp, x.id;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION router_forward_statuses() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  WITH routed AS MATERIALIZED (
    SELECT n.id, n.status, n.status_rank, n.wa_timestamp, m.id AS message_id, m.conversation_id, m.channel_id, r.area_id, r.assigned_at,
           pg_advisory_xact_lock_shared(2003201906, hashint8(m.conversation_id))::text AS order_locked
    FROM new_rows n
    JOIN messages m ON m.wamid = n.wamid
    JOIN conversation_routes r ON r.conversation_id = m.conversation_id AND r.state = 'assigned'
    WHERE n.status_rank >= 0
  ), live AS (
    SELECT a.id, a.events, a.channel_ids FROM areas a
    WHERE a.id IN (SELECT area_id FROM routed) AND a.disabled_at IS NULL
    FOR KEY SHARE
  )
  INSERT INTO forward_events (area_id, conversation_id, type, message_id, sort_at, sort_seq, data)
  -- Statuses of one second (sent, delivered, read often are) keep their rank's order.
  SELECT x.area_id, x.conversation_id, 'message.status', x.message_id, GREATEST(x.wa_timestamp, x.assigned_at) + x.status_rank * interval '1 microsecond',
         x.wa_timestamp + x.status_rank * interval '1 microsecond',
         jsonb_build_object('status', x.status, 'timestamp', x.wa_timestamp)
  FROM routed x JOIN live a ON a.id = x.area_id
  WHERE (a.events IS NULL OR 'message.status' = ANY (a.events))
    AND (a.channel_ids IS NULL OR x.channel_id = ANY (a.channel_ids))
  ORDER BY x.conversation_id, x.wa_timestamp, x.status_rank, x.id;
  RETURN NULL;
END $$;

-- The row trigger for the other writers only: the forwarding triggers above are the only ones
-- to queue these two types with a conversation (a replayed dead letter has none).
DROP TRIGGER forward_events_order_lock ON forward_events;
CREATE TRIGGER forward_events_order_lock BEFORE INSERT ON forward_events
  FOR EACH ROW WHEN (NEW.conversation_id IS NOT NULL AND NEW.type NOT IN ('message.received', 'message.status'))
  EXECUTE FUNCTION forward_order_lock();
-- An event moved into another conversation (a merge) joins that conversation's queue.
CREATE TRIGGER forward_events_order_lock_move BEFORE UPDATE OF conversation_id ON forward_events
  FOR EACH ROW WHEN (NEW.conversation_id IS NOT NULL) EXECUTE FUNCTION forward_order_lock();
