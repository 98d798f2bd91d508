-- Indexes every inbound message paid for and nothing read.
--
-- Each new message rewrites its conversation (counters, last message), and since that moves
-- last_message_at, which the inbox's recency indexes hold, the update is never HOT: every index
-- of conversations gets a new entry per message. conversations_contact_idx (contact_id) was one of
-- them, beside the unique (channel_id, contact_id). The unique key now leads with contact_id, so
-- it serves both: lookups by (channel, contact) (the upserts' ON CONFLICT (channel_id, contact_id)
-- names columns, not an order), and by contact alone (a number change's merge, the contact's
-- search-text trigger, the foreign key from contacts). One index entry fewer per message.
ALTER TABLE conversations DROP CONSTRAINT conversations_channel_id_contact_id_key;
ALTER TABLE conversations ADD CONSTRAINT conversations_contact_id_channel_id_key UNIQUE (contact_id, channel_id);
DROP INDEX conversations_contact_idx;

-- The raw events by arrival time: no query reads them that way (the unrouted replay pages by id
-- through inbound_events_unrouted_idx), and each event added an entry. A retention job that
-- deletes by age would bring its own index back.
DROP INDEX inbound_events_received_idx;
