-- The routing state's Redis copy is written after each commit, by whichever process made the
-- change; a version that grows with every change of the row (whoever writes it, raw SQL
-- included) lets a late or out-of-order cache write lose to a newer one.
ALTER TABLE conversation_routes ADD COLUMN version bigint NOT NULL DEFAULT 1;
CREATE FUNCTION conversation_routes_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.version := OLD.version + 1;
  RETURN NEW;
END $$;
CREATE TRIGGER conversation_routes_version BEFORE UPDATE ON conversation_routes
  FOR EACH ROW EXECUTE FUNCTION conversation_routes_version();

-- Claims find each queue's head through forward_events_pending_conv_area_idx (one probe per
-- queue); the index by due time only cost every stored event one more index entry.
DROP INDEX forward_events_due_idx;

-- webhook_id is 128 random bits: its unique index guarded against nothing and cost every stored
-- event, and every change of one, an entry in a randomly ordered index.
ALTER TABLE forward_events DROP CONSTRAINT forward_events_webhook_id_key;
-- Room on each page, so leasing an event (locked_until, no indexed column) is a HOT update
-- that touches no index.
ALTER TABLE forward_events SET (fillfactor = 70);
