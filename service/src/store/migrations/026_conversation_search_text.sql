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
-- a new conversation copies it from its contact, as does a conversation moved to another contact
-- (a merge), and a changed contact rewrites its conversations. The copy reads the contact FOR
-- SHARE: a concurrent name change is waited for and read, and a later one waits for the new
-- conversation's commit, so its rewrite sees it (a plain read would copy the old name while the
-- change's rewrite cannot see the uncommitted conversation). A new conversation is filled AFTER
-- INSERT, which fires only for rows really inserted: the upserts of every inbound and outbound
-- message propose their conversation again and must not pay a contact lookup for it. The
-- trigger's UPDATE runs after the whole inserting statement, so no later CTE of it can lose the
-- text (no writer changes a conversation it inserts in the same statement). The WHEN clauses
-- leave the usual upsert of an unchanged contact without any trigger call.
ALTER TABLE conversations ADD COLUMN search_text text;

CREATE FUNCTION contact_search_text(profile_name text, wa_id text, username text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  -- The newline between fields is never in a search (the API refuses control characters), so a
  -- match lies within one field (016).
  RETURN lower(coalesce(profile_name, '') || E'\n' || wa_id || E'\n' || coalesce(username, ''));

CREATE FUNCTION conversation_search_text_from_contact() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  t text;
BEGIN
  SELECT contact_search_text(ct.profile_name, ct.wa_id, ct.username) INTO t FROM contacts ct WHERE ct.id = NEW.contact_id FOR SHARE;
  IF TG_OP = 'INSERT' THEN
    UPDATE conversations SET search_text = t WHERE id = NEW.id;
    RETURN NULL;
  END IF;
  NEW.search_text := t;
  RETURN NEW;
END $$;

CREATE TRIGGER conversations_search_text_insert AFTER INSERT ON conversations
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

-- Every message's conversation update moves last_message_at (held by the recency indexes), so it
-- is never HOT and adds the unchanged text to this index too. The pending list (fastupdate, the
-- default) takes it for ~600 B of WAL per inbound message, its later merge into the index
-- included; fastupdate off writes each of the text's trigrams into the index at once (~6,500 B).
CREATE INDEX conversations_search_trgm_idx ON conversations USING gin (search_text gin_trgm_ops);
-- Only the page's search read it.
DROP INDEX contacts_search_trgm_idx;
