-- Menus per channel, versioned: a conversation part-way through keeps the version it began with.
CREATE TABLE channel_menus (
  channel_id bigint NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
  version    integer NOT NULL,
  menu       jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (channel_id, version)
);

-- Where a conversation stands in its menu: the version, the option whose sub-menu it is in
-- (null: the top level), the menu message last sent (a tap on an older one is stale),
-- invalid answers so far, and the last time the customer answered (the timeout runs from it).
ALTER TABLE conversation_routes
  ADD COLUMN menu_version     integer,
  ADD COLUMN menu_node        text,
  ADD COLUMN menu_message_id  bigint,
  ADD COLUMN invalid_count    integer NOT NULL DEFAULT 0,
  ADD COLUMN last_answer_at   timestamptz,
  -- Set while the anti-loop limit keeps the bot quiet in this conversation.
  ADD COLUMN loop_limited_at  timestamptz;
