-- Business-scoped user ids (Meta, 2026). A user with a username may write without Meta telling us
-- the phone number; every webhook carries the user's BSUID. contacts.wa_id stays the key of a
-- contact: the phone number when Meta sends it, else the BSUID. A contact first known by its BSUID
-- is re-keyed to its number when a webhook brings both (its conversations stay with it).
ALTER TABLE contacts ADD COLUMN user_id text;
ALTER TABLE contacts ADD COLUMN username text;
-- Not unique: a BSUID changes with the user's number, and two contacts met before Meta linked them
-- may both carry one.
CREATE INDEX contacts_user_id_idx ON contacts (user_id) WHERE user_id IS NOT NULL;
