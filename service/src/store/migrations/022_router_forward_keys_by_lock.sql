-- Every forwarded event paid two foreign-key checks, each a statement and a row lock of its
-- own: its area's on insert (forward_events.area_id), and its own on each recorded attempt
-- (forward_attempts.event_id, locking the very row the recording statement updates). Both
-- guard what the writers already guarantee by locks taken once per statement:
--  - every insert into forward_events selects its area FOR KEY SHARE in the inserting
--    statement (the forwarding triggers since 021, assignments, pings): an area deleted
--    before is not found and nothing is queued for it; one deleted after waits for the insert
--    to commit, and its deletion then sees the events to remove;
--  - an attempt is inserted only for an event its statement sees, with the event's area locked
--    FOR SHARE, and events are deleted only with their area.
-- The cascades stay, statement-level: deleting areas deletes their events, deleting events
-- deletes their attempts.
ALTER TABLE forward_attempts DROP CONSTRAINT forward_attempts_event_id_fkey;
ALTER TABLE forward_events DROP CONSTRAINT forward_events_area_id_fkey;

CREATE FUNCTION forward_events_of_deleted_areas() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM forward_events e USING deleted d WHERE e.area_id = d.id;
  RETURN NULL;
END $$;
CREATE TRIGGER areas_delete_forward_events AFTER DELETE ON areas
  REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION forward_events_of_deleted_areas();

CREATE FUNCTION forward_attempts_of_deleted_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM forward_attempts a USING deleted d WHERE a.event_id = d.id;
  RETURN NULL;
END $$;
CREATE TRIGGER forward_events_delete_attempts AFTER DELETE ON forward_events
  REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION forward_attempts_of_deleted_events();
