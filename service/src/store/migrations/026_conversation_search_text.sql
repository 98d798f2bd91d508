-- A search (q=) walked the inbox's recency order and looked up each conversation's contact to
-- match its name, number and username: ~2,000 contact lookups and case-folds for a page of a
-- name one contact in 36 has (6.4 ms of Postgres), and a term matching few contacts was joined
-- back from the contacts' trigram index. The searched text now sits on the conversation itself,
-- already lowercased (ILIKE is lower(text) LIKE lower(pattern) in a UTF-8 database, so matching
-- it with LIKE lower(pattern) finds exactly the same rows), with its own trigram index: the
-- planner walks the recency index when matches are many and takes the few matches from the
-- trigram index and sorts them when they are few, both on one table.
--
-- Triggers keep it in step with the contact, so no writer of contacts or conversations has to:
-- a new conversation copies it from its contact (BEFORE, no second row version; a contact
-- inserted earlier in the same statement, as inbound and outbound stores do, is visible to the
-- trigger's own query), as does a conversation moved to another contact (a merge), and a changed
-- contact rewrites its conversations. The WHEN clauses leave the usual upsert of an unchanged
-- contact without any trigger call.
ALTER TABLE conversations ADD COLUMN search_text text;

CREATE FUNCTION contact_search_text(profile_name text, wa_id text, username text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  -- The newline between fields is never in a search (the API refuses control characters), so a
  -- match lies within one field (016).
  RETURN lower(coalesce(profile_name, '') || E'\n' || wa_id || E'\n' || coalesce(username, ''));

CREATE FUNCTION conversation_search_text_from_contact() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.search_text := (SELECT contact_search_text(ct.profile_name, ct.wa_id, ct.username) FROM contacts ct WHERE ct.id = NEW.contact_id);
  RETURN NEW;
END $$;

CREATE TRIGGER conversations_search_text_insert BEFORE INSERT ON conversations
  FOR EACH ROW EXECUTE FUNCTION conversation_search_text_from_contact();
CREATE TRIGGER conversations_search_text_contact BEFORE UPDATE OF contact_id ON conversations
  FOR EACH ROW WHEN (OLD.contact_id IS DISTINCT FROM NEW.contact_id) EXECUTE FUNCTION conversation_search_text_from_contact();

CREATE FUNCTION contact_search_text_to_conversations() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  t text := contact_search_text(NEW.profile_name, NEW.wa_id, NEW.username);
BEGIN
  UPDATE conversations SET search_text = t WHERE contact_id = NEW.id AND search_text IS DISTINCT FROM t;
  RETURN NULL;
END $$;

CREATE TRIGGER contacts_search_text_update AFTER UPDATE OF profile_name, wa_id, username ON contacts
  FOR EACH ROW WHEN (OLD.profile_name IS DISTINCT FROM NEW.profile_name OR OLD.wa_id IS DISTINCT FROM NEW.wa_id OR OLD.username IS DISTINCT FROM NEW.username)
  EXECUTE FUNCTION contact_search_text_to_conversations();

UPDATE conversations c SET search_text = contact_search_text(ct.profile_name, ct.wa_id, ct.username) FROM contacts ct WHERE ct.id = c.contact_id;

CREATE INDEX conversations_search_trgm_idx ON conversations USING gin (search_text gin_trgm_ops);
-- Only the page's search read it.
DROP INDEX contacts_search_trgm_idx;
