-- Coexistence: history sync runs and their chunks, echoes' edits and revokes, the business
-- app's contact book.

-- One row per channel: the latest history sync, with counters the API and metrics read.
CREATE TABLE sync_runs (
  channel_id       bigint PRIMARY KEY REFERENCES channels (id),
  status           text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'declined', 'failed')),
  phase            smallint NOT NULL DEFAULT 0,
  progress         smallint NOT NULL DEFAULT 0,
  chunks_received  integer NOT NULL DEFAULT 0,
  chunks_applied   integer NOT NULL DEFAULT 0,
  chunks_failed    integer NOT NULL DEFAULT 0,
  messages_stored  bigint NOT NULL DEFAULT 0,
  error_code       integer,
  error_message    text,
  started_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  completed_at     timestamptz
);

-- Every chunk applied, once: a repeated chunk (Meta redelivers) finds its row and does nothing.
CREATE TABLE sync_chunks (
  channel_id      bigint NOT NULL REFERENCES channels (id),
  phase           smallint NOT NULL,
  chunk_order     integer NOT NULL,
  progress        smallint NOT NULL,
  messages        integer NOT NULL,
  messages_stored integer NOT NULL,
  applied_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (channel_id, phase, chunk_order)
);

ALTER TABLE messages ADD COLUMN edited_at timestamptz;
ALTER TABLE messages ADD COLUMN revoked_at timestamptz;

-- The name the business saved in its app (smb_app_state_sync), apart from the WhatsApp profile name.
ALTER TABLE contacts ADD COLUMN saved_name text;
ALTER TABLE contacts ADD COLUMN removed_at timestamptz;
