-- Claims walk the queues of the areas they may deliver to, area by area: an area whose circuit
-- is open (its receiver down) or that is disabled keeps its backlog out of every claim, where the
-- index by conversation first made each claim probe every queue of every area, its own backlog
-- included, so a down area's growing backlog slowed the healthy areas' deliveries.
CREATE INDEX forward_events_pending_area_conv_idx ON forward_events (area_id, conversation_id, sort_at, sort_seq, id) WHERE status = 'pending';
DROP INDEX forward_events_pending_conv_area_idx;
