-- A message's statuses reach its area in rank order, and the area ends on the status the inbox
-- shows. Meta does not order its webhooks: a message's `read` can be stored (by one worker, in
-- one batch) before its `delivered` of the same second (another worker, a later batch). While
-- both wait in the queue, the rank in sort_at (migration 010 on) puts `delivered` first. But once
-- `read` has left (delivered to the area, or on its way: leased), a `delivered` stored after it
-- was still queued behind it and forwarded, so the area's last word on the message was
-- `delivered` while GET /v1/messages shows `read` (applyStatuses: the highest rank wins, `failed`
-- is terminal). Such a status is not queued any more: it says less than what the area already
-- has (a read message was delivered; a failed one stays failed), and it stays in the message's
-- status history. "Left" is conservative: a pending status behind a leased head of its queue
-- may be in the run a worker took with that head (run members are not leased themselves). A status of a higher rank is queued as before, and a lower one is queued as
-- before while the higher one has not left: sort_at orders them.
--
-- The ranks are STATUS_RANK's (service/src/whatsapp/statuses.ts): sent 1, delivered 2, read 3,
-- played 4, failed 9; what the queue keeps of a status is its name (data.status).
CREATE FUNCTION router_status_rank(status text) RETURNS smallint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE status WHEN 'received' THEN 0 WHEN 'pending' THEN 0 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2
    WHEN 'read' THEN 3 WHEN 'played' THEN 4 WHEN 'failed' THEN 9 ELSE -1 END::smallint
$$;

-- The status events of a message for an area, found without walking the area's history (a few
-- per outbound message; customer messages and hand-offs have no entry).
CREATE INDEX forward_events_status_message_idx ON forward_events (message_id, area_id) WHERE type = 'message.status';

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
    -- Not behind a status of a higher rank that already left for this area.
    AND NOT EXISTS (
      SELECT 1 FROM forward_events f
      WHERE f.message_id = x.message_id AND f.area_id = x.area_id AND f.type = 'message.status'
        AND router_status_rank(f.data->>'status') > x.status_rank
        AND (f.status = 'succeeded' OR (f.status = 'pending' AND EXISTS (
          -- Leased, or behind a leased head: in a run a worker is delivering.
          SELECT 1 FROM forward_events h
          WHERE h.conversation_id = f.conversation_id AND h.area_id = f.area_id AND h.status = 'pending'
            AND h.locked_until > now() AND (h.sort_at, h.sort_seq, h.id) <= (f.sort_at, f.sort_seq, f.id)))))
  ORDER BY x.conversation_id, x.wa_timestamp, x.status_rank, x.id;
  RETURN NULL;
END $$;
