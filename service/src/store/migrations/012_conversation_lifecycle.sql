-- Conversation lifecycle (open/closed, an assignee) and the indexes behind the inbox filters.
-- The inbox is ordered by latest activity, conversations without a message last. Written as
-- (coalesce(last_message_at, '-infinity'), id) DESC, a page's cursor is one row comparison, an
-- index range: a deep page starts where the last one stopped instead of reading every row before
-- it (with NULLS LAST and an OR for the nulls, it could not). Each filter gets an index in that
-- order, so a page reads its rows in order and stops at the limit.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

ALTER TABLE conversations
  ADD COLUMN status   text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
  -- An opaque agent id from the caller's own user directory.
  ADD COLUMN assignee text CHECK (length(assignee) BETWEEN 1 AND 200);

DROP INDEX conversations_activity_idx;
CREATE INDEX conversations_recent_idx ON conversations ((coalesce(last_message_at, '-infinity'::timestamptz)) DESC, id DESC);
CREATE INDEX conversations_channel_recent_idx ON conversations (channel_id, (coalesce(last_message_at, '-infinity'::timestamptz)) DESC, id DESC);
CREATE INDEX conversations_status_recent_idx ON conversations (status, (coalesce(last_message_at, '-infinity'::timestamptz)) DESC, id DESC);
CREATE INDEX conversations_assignee_recent_idx ON conversations (assignee, (coalesce(last_message_at, '-infinity'::timestamptz)) DESC, id DESC) WHERE assignee IS NOT NULL;
CREATE INDEX conversations_unread_recent_idx ON conversations ((coalesce(last_message_at, '-infinity'::timestamptz)) DESC, id DESC) WHERE unread_count > 0;
-- Search reaches conversations through their contact (and a number change merges by contact).
CREATE INDEX conversations_contact_idx ON conversations (contact_id);

-- Search: a substring of the name, the number or the username, case-insensitive, in one
-- trigram index over the three (the query repeats this exact expression).
CREATE INDEX contacts_search_trgm_idx ON contacts
  USING gin ((coalesce(profile_name, '') || ' ' || wa_id || ' ' || coalesce(username, '')) gin_trgm_ops);
