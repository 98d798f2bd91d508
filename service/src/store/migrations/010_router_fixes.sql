-- Forwarding order is per (conversation, area): a disabled or failing area's pending events
-- must not hold the conversation's events for another area (after a reassignment) forever.
CREATE INDEX forward_events_pending_conv_area_idx ON forward_events (conversation_id, area_id, sort_at, sort_seq, id) WHERE status = 'pending';
DROP INDEX forward_events_pending_conv_idx;

-- A disabled area gets no new events: nobody would deliver them.
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
  ORDER BY n.conversation_id, n.wa_timestamp, n.id;
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
  ORDER BY m.conversation_id, n.wa_timestamp, n.status_rank, n.id;
  RETURN NULL;
END $$;
