-- Coexistence, continued: chunk deliveries told apart by content (Meta's later history webhooks
-- carry the media ids of earlier placeholders), failed chunks kept until they are applied, each
-- number's own contact book, and edits or revokes that arrive before the message they change.

-- A slot (channel, phase, chunk_order) is applied once; the digests of every delivery applied in
-- it tell a repeat (same bytes: a no-op) from a follow-up (different content: applied too).
-- A chunk dead-lettered is kept as 'failed' until a replay applies it.
ALTER TABLE sync_chunks ADD COLUMN state text NOT NULL DEFAULT 'applied' CHECK (state IN ('applied', 'failed'));
ALTER TABLE sync_chunks ADD COLUMN digests bytea[] NOT NULL DEFAULT '{}';
ALTER TABLE sync_chunks ADD COLUMN error text;
ALTER TABLE sync_chunks ALTER COLUMN applied_at DROP NOT NULL;

-- Each WhatsApp Business app keeps its own address book: the saved name belongs to the pair.
CREATE TABLE channel_contacts (
  channel_id bigint NOT NULL REFERENCES channels (id),
  contact_id bigint NOT NULL REFERENCES contacts (id),
  saved_name text,
  first_name text,
  removed_at timestamptz,
  -- Meta's timestamp of the change applied last: an older change delivered late loses.
  synced_at  timestamptz NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (channel_id, contact_id)
);

-- Migration 003 kept the saved name on the contact, shared by every number: it moves to the
-- numbers that talk to that contact.
INSERT INTO channel_contacts (channel_id, contact_id, saved_name, removed_at, synced_at)
SELECT cv.channel_id, ct.id, ct.saved_name, ct.removed_at, ct.updated_at
FROM contacts ct JOIN conversations cv ON cv.contact_id = ct.id
WHERE ct.saved_name IS NOT NULL OR ct.removed_at IS NOT NULL;
ALTER TABLE contacts DROP COLUMN saved_name;
ALTER TABLE contacts DROP COLUMN removed_at;

-- Edits and revokes (the business's, from the app): kept apart from the timeline and applied to
-- their message whenever it lands, whichever of the two arrives first.
CREATE TABLE message_edits (
  wamid        text PRIMARY KEY,
  target_wamid text NOT NULL,
  kind         text NOT NULL CHECK (kind IN ('edit', 'revoke')),
  body         text,
  wa_timestamp timestamptz NOT NULL,
  raw          jsonb NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_edits_target_idx ON message_edits (target_wamid);
