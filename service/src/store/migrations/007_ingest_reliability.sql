-- Each history chunk delivery (the job that carried it and the chunk's place there) counted once
-- in sync_runs.chunks_received, however often the job runs.
CREATE TABLE sync_chunk_deliveries (
  channel_id  bigint NOT NULL REFERENCES channels (id),
  delivery    bytea NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (channel_id, delivery)
);
