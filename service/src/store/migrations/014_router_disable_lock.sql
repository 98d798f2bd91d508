-- An event queued while its area is being disabled must not stay pending forever (no claim
-- takes a disabled area's events, and the disable's dead-lettering cannot see an uncommitted
-- one). The area row is locked FOR KEY SHARE (the lock the foreign key takes anyway, so no extra
-- contention between writers): a disable waits for it with FOR UPDATE and then dead-letters what
-- was queued, and a queueing that waited for a disable re-reads disabled_at and queues nothing.
CREATE OR REPLACE FUNCTION router_forward_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO forward_events (area_id, conversation_id, type, message_id, sort_at, sort_seq)
  SELECT r.area_id, n.conversation_id, 'message.received', n.id, GREATEST(n.wa_timestamp, r.assigned_at), n.wa_timestamp
  FROM new_rows n
  JOIN conversation_routes r ON r.conversation_id = n.conversation_id AND r.state = 'assigned'
  JOIN areas a ON a.id = r.area_id AND a.disabled_at IS NULL
  WHERE n.direction = 'inbound' AND n.source = 'live'
    AND (a.events IS NULL OR 'message.received' = ANY (a.events))
    AND (a.channel_ids IS NULL OR n.channel_id = ANY (a.channel_ids))
  ORDER BY n.conversation_id, n.wa_timestamp, n.id
  FOR KEY SHARE OF a;
  RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION router_forward_statuses() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO forward_events (area_id, conversation_id, type, message_id, sort_at, sort_seq, data)
  -- Statuses of one second (sent, delivered, read often are) keep their rank's order.
  SELECT r.area_id, m.conversation_id, 'message.status', m.id, GREATEST(n.wa_timestamp, r.assigned_at) + n.status_rank * interval '1 microsecond',
         n.wa_timestamp + n.status_rank * interval '1 microsecond',
         jsonb_build_object('status', n.status, 'timestamp', n.wa_timestamp)
  FROM new_rows n
  JOIN messages m ON m.wamid = n.wamid
  JOIN conversation_routes r ON r.conversation_id = m.conversation_id AND r.state = 'assigned'
  JOIN areas a ON a.id = r.area_id AND a.disabled_at IS NULL
  WHERE n.status_rank >= 0
    AND (a.events IS NULL OR 'message.status' = ANY (a.events))
    AND (a.channel_ids IS NULL OR m.channel_id = ANY (a.channel_ids))
  ORDER BY m.conversation_id, n.wa_timestamp, n.status_rank, n.id
  FOR KEY SHARE OF a;
  RETURN NULL;
END $$;
