-- wa-router schema, version 1: channels, contacts, conversations, messages, statuses, raw events.
-- Identity keys are bigint: history sync writes tens of thousands of rows at a time.

CREATE TABLE channels (
  id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  phone_number_id      text NOT NULL UNIQUE,
  waba_id              text,
  display_phone_number text,
  name                 text,
  -- The Graph API token of this number; never returned by the API, never logged.
  access_token         text,
  messages_per_second  integer NOT NULL DEFAULT 80 CHECK (messages_per_second > 0),
  paused_reason        text,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contacts (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  wa_id        text NOT NULL UNIQUE,
  profile_name text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE conversations (
  id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  channel_id            bigint NOT NULL REFERENCES channels (id),
  contact_id            bigint NOT NULL REFERENCES contacts (id),
  last_message_at       timestamptz,
  last_message_id       bigint,
  -- The customer-service window (24 h) runs from the last inbound message.
  last_inbound_at       timestamptz,
  last_agent_message_id bigint,
  unread_count          integer NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  UNIQUE (channel_id, contact_id)
);
CREATE INDEX conversations_activity_idx ON conversations (last_message_at DESC NULLS LAST, id DESC);

-- channel_id and contact_id repeat the conversation's (for filters without a join) and
-- carry no foreign key of their own: the conversation's key implies them, and each key
-- check costs a lookup per row on the bulk paths (about 15% of ingest CPU, measured).
CREATE TABLE messages (
  id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- Null only for an outbound message not yet accepted by the Graph API.
  wamid                text UNIQUE,
  channel_id           bigint NOT NULL,
  conversation_id      bigint NOT NULL REFERENCES conversations (id),
  contact_id           bigint NOT NULL,
  direction            text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
  source               text NOT NULL DEFAULT 'live' CHECK (source IN ('live', 'history', 'echo', 'api')),
  type                 text NOT NULL,
  body                 text,
  media_id             text,
  media_mime_type      text,
  media_sha256         text,
  media_filename       text,
  latitude             double precision,
  longitude            double precision,
  reply_to_wamid       text,
  reaction_to_wamid    text,
  reaction_emoji       text,
  interactive_reply_id text,
  forwarded            boolean NOT NULL DEFAULT false,
  referral             jsonb,
  -- The message object exactly as Meta (or our API caller) gave it.
  raw                  jsonb NOT NULL,
  wa_timestamp         timestamptz NOT NULL,
  status               text NOT NULL,
  status_rank          smallint NOT NULL DEFAULT 0,
  sent_at              timestamptz,
  delivered_at         timestamptz,
  read_at              timestamptz,
  failed_at            timestamptz,
  error_code           integer,
  error_title          text,
  error_details        text,
  idempotency_key      text UNIQUE,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now()
);
-- Conversation timelines read newest first; history imports land out of id order, so order by time.
CREATE INDEX messages_conversation_time_idx ON messages (conversation_id, wa_timestamp DESC, id DESC);

-- Every status Meta reported, in arrival order, even for messages we have not seen yet:
-- the message's own status is derived from this history, so order of arrival never matters.
CREATE TABLE message_statuses (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  wamid         text NOT NULL,
  status        text NOT NULL,
  status_rank   smallint NOT NULL,
  wa_timestamp  timestamptz NOT NULL,
  recipient_id  text,
  error_code    integer,
  error_title   text,
  error_details text,
  raw           jsonb NOT NULL,
  received_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (wamid, status)
);

-- The verified webhook bodies, byte for byte (json keeps the text as sent), once each.
CREATE TABLE inbound_events (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  body_sha256      bytea NOT NULL UNIQUE,
  received_at      timestamptz NOT NULL,
  processed_at     timestamptz NOT NULL DEFAULT now(),
  fields           text[] NOT NULL,
  phone_number_ids text[] NOT NULL,
  -- No channel serves one of its phone_number_ids: kept, counted, replayable once one does.
  unrouted         boolean NOT NULL DEFAULT false,
  payload          json NOT NULL
);
CREATE INDEX inbound_events_unrouted_idx ON inbound_events (id) WHERE unrouted;
CREATE INDEX inbound_events_received_idx ON inbound_events (received_at);
