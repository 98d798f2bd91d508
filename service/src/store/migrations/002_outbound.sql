-- Outbound messages: persisted first, then handed to the queue through an outbox, so a
-- crash between the two can never lose a message (the relay re-enqueues what is left).

-- When the Graph API accepted the message (its wamid came back); `sent` comes by webhook.
ALTER TABLE messages ADD COLUMN accepted_at timestamptz;

-- Outbound messages of a conversation still waiting to leave, in creation order: the
-- sender checks it so messages to one recipient leave in the order they were created.
CREATE INDEX messages_outbound_pending_idx ON messages (conversation_id, id) WHERE direction = 'outbound' AND wamid IS NULL AND status = 'pending';

CREATE TABLE outbox (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  message_id bigint NOT NULL,
  channel_id bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_created_idx ON outbox (created_at);
