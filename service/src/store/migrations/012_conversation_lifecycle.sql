-- Conversation lifecycle (open/closed, an assignee) and the indexes behind the inbox filters.
-- Every list is ordered by latest activity (last_message_at DESC NULLS LAST, id DESC), so each
-- filter gets an index in that order: a page reads its rows in order and stops at the limit.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

ALTER TABLE conversations
  ADD COLUMN status   text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
  -- An opaque agent id from the caller's own user directory.
  ADD COLUMN assignee text CHECK (length(assignee) BETWEEN 1 AND 200);

CREATE INDEX conversations_channel_activity_idx ON conversations (channel_id, last_message_at DESC NULLS LAST, id DESC);
CREATE INDEX conversations_status_activity_idx ON conversations (status, last_message_at DESC NULLS LAST, id DESC);
CREATE INDEX conversations_assignee_activity_idx ON conversations (assignee, last_message_at DESC NULLS LAST, id DESC) WHERE assignee IS NOT NULL;
CREATE INDEX conversations_unread_activity_idx ON conversations (last_message_at DESC NULLS LAST, id DESC) WHERE unread_count > 0;
-- Search reaches conversations through their contact (and a number change merges by contact).
CREATE INDEX conversations_contact_idx ON conversations (contact_id);

-- Search: a substring of the name, the number or the username, case-insensitive, in one
-- trigram index over the three (the query repeats this exact expression).
CREATE INDEX contacts_search_trgm_idx ON contacts
  USING gin ((coalesce(profile_name, '') || ' ' || wa_id || ' ' || coalesce(username, '')) gin_trgm_ops);
